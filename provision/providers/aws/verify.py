"""`provision verify` for S3: the probe table of an access key, and the probe objects it needs.

Each row is one S3 request made with the grant's key; what the key must be allowed follows the inline policy
`provision.policies.s3_policy` (S3's actions: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
The rows cover what the platforms do with the key: Supervisely's instance storage (single and multipart uploads,
deletes, ListMultipartUploads for large files: https://docs.supervisely.com/enterprise-edition/advanced-tuning/s3),
a Links connection and CVAT's cloud storage (HeadBucket on attach, listings by "folder", HeadObject, ranged reads:
https://docs.cvat.ai/docs/manual/basics/attach-cloud-storages/), and what the key must never do.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from provision.errors import CloudRefused, ProvisionError, one_line
from provision.policies import policy_json
from provision.providers.aws.buckets import location
from provision.providers.aws.sdk import answered_errors, error_code
from provision.providers.base import Probe, VerifyRow, run_concurrently, run_probes

DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled", "UnauthorizedOperation",
          "AccessControlListNotSupported")
"""Error codes that mean the request was denied (``AccessControlListNotSupported``: a bucket with ACLs disabled
refuses a request carrying an ACL, https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html)."""
PROBE_BODY = b"provision verify"
RANGE = "bytes=0-1023"
"""The ranged read of the probes (what a viewer or CVAT's chunk reader asks for)."""
WRITTEN = (".w", ".c", ".acl", ".copy", ".m")
"""Suffixes of the keys the write probes use (removed afterwards with the probe objects)."""
MARK = "provision:verify"
"""The tag verify sets on its temporary bucket when it creates it; its value is the UTC creation time (ISO 8601)."""
STALE_AFTER = timedelta(minutes=5)
"""A temporary bucket marked longer ago than this is a leftover of an interrupted verify (a running verify removes
its own within seconds), removed by the next verify."""
TEMPORARY = re.compile(r"provision-verify-[0-9a-f]{10}")
"""The names of verify's temporary buckets."""
READ = ("", ".d")
"""Suffixes of the keys the set-up puts in every bucket: the object the reads use, and the one DeleteObject
removes (distinct, so the probes may run concurrently)."""


def probe_table(user: Any, admin: Any, buckets: list[str], full: bool, probe_key: str, other: str) -> list[Probe]:
    """The probes of a key, in order; building it makes no request. Every probe uses its own key, so they may
    run concurrently.

    Per bucket: ListObjectsV2, GetObject, GetBucketLocation (allowed); PutObject, DeleteObject (of
    ``<probe_key>.d``), CreateMultipartUpload (allowed only for ``full``; the upload is aborted with ``admin``);
    PutBucketPolicy (denied); then the Links / CVAT reads `link_probes` (allowed); a complete multipart upload and
    ListMultipartUploads (``full``); CopyObject from ``other`` and PutObject with ``x-amz-acl: public-read``
    (denied). Then ListBuckets, and ListObjectsV2, GetObject and PutObject on ``other`` (denied).

    Args:
        user: an S3 client with the grant's key. admin: an admin S3 client (clean-up of multipart uploads).
        buckets: the grant's buckets, each holding ``probe_key`` and ``<probe_key>.d``. full: the grant's access
            is ``full``.
        probe_key: the key of the probe object. other: a bucket outside the grant, holding ``probe_key``.

    Returns:
        The `Probe` rows.
    """
    rows: list[Probe] = []
    empty_policy = policy_json({"Version": "2012-10-17", "Statement": []})
    for bucket in buckets:
        upload, doomed, copy = f"{probe_key}.m", f"{probe_key}.d", f"{probe_key}.copy"
        rows += [
            Probe("ListObjectsV2", bucket, True, partial(user.list_objects_v2, Bucket=bucket, MaxKeys=1)),
            Probe("GetObject", f"{bucket}/{probe_key}", True, partial(user.get_object, Bucket=bucket, Key=probe_key)),
            Probe("GetBucketLocation", bucket, True, partial(user.get_bucket_location, Bucket=bucket)),
            Probe("PutObject", f"{bucket}/{probe_key}.w", full,
                  partial(user.put_object, Bucket=bucket, Key=f"{probe_key}.w", Body=b"x")),
            Probe("DeleteObject", f"{bucket}/{doomed}", full, partial(user.delete_object, Bucket=bucket, Key=doomed)),
            Probe("CreateMultipartUpload", f"{bucket}/{upload}", full,
                  partial(user.create_multipart_upload, Bucket=bucket, Key=upload),
                  partial(_abort, admin, bucket, upload)),
            Probe("PutBucketPolicy", bucket, False,
                  partial(user.put_bucket_policy, Bucket=bucket, Policy=empty_policy)),
            *link_probes(user, bucket, probe_key),
            multipart_probe(user, admin, bucket, f"{probe_key}.c", full),
            Probe("ListMultipartUploads", bucket, full,
                  partial(user.list_multipart_uploads, Bucket=bucket, MaxUploads=1)),
            Probe("CopyObject", f"{bucket}/{copy} (from {other}, another bucket)", False,
                  partial(user.copy_object, Bucket=bucket, Key=copy, CopySource={"Bucket": other, "Key": probe_key})),
            Probe("PutObject", f"{bucket}/{probe_key}.acl (x-amz-acl: public-read)", False,
                  partial(user.put_object, Bucket=bucket, Key=f"{probe_key}.acl", Body=b"x", ACL="public-read")),
        ]
    target = f"{other} (another bucket)"
    rows += [
        Probe("ListBuckets", "*", False, user.list_buckets),
        Probe("ListObjectsV2", target, False, partial(user.list_objects_v2, Bucket=other)),
        Probe("PutObject", target, False, partial(user.put_object, Bucket=other, Key="x", Body=b"x")),
        Probe("GetObject", f"{other}/{probe_key} (another bucket)", False,
              partial(user.get_object, Bucket=other, Key=probe_key)),
    ]
    return rows


def link_probes(user: Any, bucket: str, key: str) -> list[Probe]:
    """The reads every grant must allow, as a Links connection and CVAT's server make them: HeadBucket (CVAT's
    attach check, minio clients' ``bucketExists``), ListObjectsV2 with ``Delimiter=/`` (browsing by folder),
    HeadObject and a ranged GetObject (`RANGE`) of ``key``.

    Args:
        user: an S3 client with the grant's key. bucket: one of the grant's buckets, holding ``key``.

    Returns:
        Four `Probe` rows, all expected allowed; building them makes no request.
    """
    return [
        Probe("HeadBucket", bucket, True, partial(_request, user, "head_bucket", Bucket=bucket)),
        Probe("ListObjectsV2", f"{bucket} (Delimiter=/)", True,
              partial(_request, user, "list_objects_v2", Bucket=bucket, Delimiter="/", MaxKeys=1)),
        Probe("HeadObject", f"{bucket}/{key}", True, partial(_request, user, "head_object", Bucket=bucket, Key=key)),
        Probe("GetObject", f"{bucket}/{key} (Range {RANGE})", True,
              partial(_ranged_read, user, bucket, key)),
    ]


def multipart_probe(user: Any, admin: Any, bucket: str, key: str, full: bool) -> Probe:
    """A complete multipart upload of ``key`` (CreateMultipartUpload, UploadPart, CompleteMultipartUpload), as
    Supervisely uploads large files; allowed only for ``full``. An upload left unfinished by a refusal is aborted
    (with ``admin``, else ``user``)."""
    return Probe("CompleteMultipartUpload", f"{bucket}/{key} (Create + UploadPart + Complete)", full,
                 partial(_multipart, user, admin or user, bucket, key))


def _request(client: Any, operation: str, **kwargs: Any) -> Any:
    """``client.<operation>(**kwargs)``, the client looked up when the probe runs (a table is built before)."""
    return getattr(client, operation)(**kwargs)


def _ranged_read(user: Any, bucket: str, key: str) -> bytes:
    return user.get_object(Bucket=bucket, Key=key, Range=RANGE)["Body"].read()  # type: ignore[no-any-return]


def _multipart(user: Any, admin: Any, bucket: str, key: str) -> Any:
    upload = user.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        part = user.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=PROBE_BODY)
        return user.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    except BaseException:  # any failure of the probe: abort the upload it started, then let the row report it
        try:
            admin.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        except answered_errors():
            pass  # the refusal of the probe is what the row reports
        raise


def _abort(admin: Any, bucket: str, key: str, started: dict[str, Any]) -> None:
    """Abort the multipart upload a probe started (with the admin credentials)."""
    admin.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=started["UploadId"])


def outcome(exc: BaseException) -> str | None:
    """A probe's verdict from its error: ``deny`` for S3's access-denied codes, ``error: <code>`` for any other
    answer; None (propagate) when S3 did not answer."""
    if not isinstance(exc, answered_errors()):
        return None
    code = error_code(exc)
    return "deny" if code in DENIED else f"error: {code}"


def verify_key(user: Any, admin: Any, buckets: list[str], full: bool, region: str) -> list[VerifyRow]:
    """Run `probe_table` for a key, concurrently: with ``admin`` it first makes one temporary bucket
    (``provision-verify-<hex>``, tagged `MARK`, holding the probe object) to stand for "another bucket" and puts
    the probe objects (`READ`) in each bucket, all at once; all are removed afterwards. It also removes the
    temporary buckets an interrupted verify left (`leftovers` older than `STALE_AFTER`).

    Returns:
        One row per probe, in table order.

    Raises:
        CloudRefused: the admin credentials could not set the probes up.
        ProvisionError: the probe objects or the temporary bucket could not be removed (names them).
    """
    token = uuid.uuid4().hex[:10]
    probe_key = f".provision-verify/{token}"
    other = f"provision-verify-{token}"

    def make_other() -> None:
        admin.create_bucket(Bucket=other, **location(region))
        admin.put_bucket_tagging(Bucket=other, Tagging={"TagSet": [
            {"Key": MARK, "Value": datetime.now(timezone.utc).isoformat(timespec="seconds")}]})
        admin.put_object(Bucket=other, Key=probe_key, Body=PROBE_BODY)

    try:
        stale = leftovers(admin, datetime.now(timezone.utc) - STALE_AFTER)
        run_concurrently([make_other] + [partial(remove_bucket, admin, name) for name in stale] + [
            partial(admin.put_object, Bucket=bucket, Key=probe_key + suffix, Body=PROBE_BODY)
            for bucket in buckets for suffix in READ])
        return run_probes(probe_table(user, admin, buckets, full, probe_key, other), outcome)
    except answered_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {one_line(exc)}",
                           "check the admin credentials") from None
    finally:
        cleanup(admin, buckets, probe_key, other)


def cleanup(admin: Any, buckets: list[str], probe_key: str, other: str) -> None:
    """Remove verify's probe objects and temporary bucket (one request per bucket, concurrently; the temporary
    bucket is listed, emptied and deleted).

    Raises:
        ProvisionError: S3 refused (other than "already gone"); names what to delete by hand.
    """
    keys = [{"Key": probe_key + suffix} for suffix in READ + WRITTEN]

    def unless_gone(call: Any) -> None:
        try:
            call()
        except answered_errors() as exc:
            if error_code(exc) not in ("NoSuchBucket", "404"):
                raise

    try:
        run_concurrently([partial(remove_bucket, admin, other)] + [
            partial(unless_gone, partial(admin.delete_objects, Bucket=bucket, Delete={"Objects": keys}))
            for bucket in buckets])
    except answered_errors() as exc:
        raise ProvisionError(f"verify could not remove its probe objects: {one_line(exc)}",
                             f"delete bucket {other} and keys {probe_key}* by hand") from None


def leftovers(admin: Any, before: datetime) -> list[str]:
    """Verify's temporary buckets made before ``before``: named like `TEMPORARY` and tagged `MARK` with an older
    time, or with no tag at all and created before ``before`` (a verify stopped between CreateBucket and
    PutBucketTagging). A bucket with other tags, or a mark that is not a time, is not verify's and is left alone.

    Args:
        admin: an admin S3 client. before: a timezone-aware UTC datetime.

    Returns:
        The bucket names, in ListBuckets order.

    Raises:
        The SDK's error when S3 refuses a listing (a bucket gone meanwhile is skipped).
    """
    def made_before(bucket: dict[str, Any]) -> str | None:
        name = bucket["Name"]
        try:
            tags = {t["Key"]: t["Value"] for t in admin.get_bucket_tagging(Bucket=name).get("TagSet", [])}
        except answered_errors() as exc:
            code = error_code(exc)
            if code in ("NoSuchBucket", "404"):
                return None
            if code != "NoSuchTagSet":
                raise
            created = bucket.get("CreationDate")
            return name if created is not None and created < before else None
        try:
            marked = datetime.fromisoformat(tags[MARK])
        except (KeyError, ValueError):
            return None
        if marked.tzinfo is None:
            return None
        return name if marked < before else None

    candidates = [b for b in admin.list_buckets().get("Buckets", []) if TEMPORARY.fullmatch(b["Name"])]
    return [name for name in run_concurrently([partial(made_before, b) for b in candidates]) if name]


def remove_bucket(admin: Any, bucket: str) -> None:
    """Empty (one listing: a temporary bucket holds a few objects) and delete one of verify's temporary buckets;
    a bucket already gone is fine.

    Raises:
        The SDK's error for any other refusal.
    """
    try:
        listing = admin.list_objects_v2(Bucket=bucket).get("Contents", [])
        if listing:
            admin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listing]})
        admin.delete_bucket(Bucket=bucket)
    except answered_errors() as exc:
        if error_code(exc) not in ("NoSuchBucket", "404"):
            raise
