"""`provision verify` for S3: the probe table of an access key, and the probe objects it needs.

Each row is one S3 request made with the grant's key; what the key must be allowed follows the inline policy
`provision.policies.s3_policy` (S3's actions: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from provision.errors import CloudRefused, ProvisionError, one_line
from provision.policies import policy_json
from provision.providers.aws.buckets import location
from provision.providers.aws.sdk import answered_errors, error_code
from provision.providers.base import Probe, VerifyRow, run_probes

DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled", "UnauthorizedOperation")
"""Error codes that mean the request was denied."""
PROBE_BODY = b"provision verify"


def probe_table(user: Any, admin: Any, buckets: list[str], full: bool, probe_key: str, other: str) -> list[Probe]:
    """The probes of a key, in order; building it makes no request.

    Per bucket: ListObjectsV2, GetObject, GetBucketLocation (allowed); PutObject, DeleteObject,
    CreateMultipartUpload (allowed only for ``full``; the upload is aborted with ``admin``); PutBucketPolicy
    (denied). Then ListBuckets, and ListObjectsV2 and PutObject on another bucket (denied).

    Args:
        user: an S3 client with the grant's key. admin: an admin S3 client (clean-up).
        buckets: the grant's buckets, each holding ``probe_key``. full: the grant's access is ``full``.
        probe_key: the key of the probe object. other: a bucket outside the grant.

    Returns:
        The `Probe` rows.
    """
    rows: list[Probe] = []
    empty_policy = policy_json({"Version": "2012-10-17", "Statement": []})
    for bucket in buckets:
        upload = f"{probe_key}.m"
        rows += [
            Probe("ListObjectsV2", bucket, True, partial(user.list_objects_v2, Bucket=bucket, MaxKeys=1)),
            Probe("GetObject", f"{bucket}/{probe_key}", True, partial(user.get_object, Bucket=bucket, Key=probe_key)),
            Probe("GetBucketLocation", bucket, True, partial(user.get_bucket_location, Bucket=bucket)),
            Probe("PutObject", f"{bucket}/{probe_key}.w", full,
                  partial(user.put_object, Bucket=bucket, Key=f"{probe_key}.w", Body=b"x")),
            Probe("DeleteObject", f"{bucket}/{probe_key}", full,
                  partial(user.delete_object, Bucket=bucket, Key=probe_key)),
            Probe("CreateMultipartUpload", f"{bucket}/{upload}", full,
                  partial(user.create_multipart_upload, Bucket=bucket, Key=upload),
                  partial(_abort, admin, bucket, upload)),
            Probe("PutBucketPolicy", bucket, False,
                  partial(user.put_bucket_policy, Bucket=bucket, Policy=empty_policy)),
        ]
    rows += [
        Probe("ListBuckets", "*", False, user.list_buckets),
        Probe("ListObjectsV2", f"{other} (another bucket)", False, partial(user.list_objects_v2, Bucket=other)),
        Probe("PutObject", f"{other} (another bucket)", False,
              partial(user.put_object, Bucket=other, Key="x", Body=b"x")),
    ]
    return rows


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
    """Run `probe_table` for a key: with ``admin`` it first puts one probe object in each bucket and makes one
    temporary bucket (``provision-verify-<hex>``) to stand for "another bucket"; all are removed afterwards.

    Returns:
        One row per probe.

    Raises:
        CloudRefused: the admin credentials could not set the probes up.
        ProvisionError: the probe objects or the temporary bucket could not be removed (names them).
    """
    token = uuid.uuid4().hex[:10]
    probe_key = f".provision-verify/{token}"
    other = f"provision-verify-{token}"
    try:
        admin.create_bucket(Bucket=other, **location(region))
        for bucket in buckets:
            admin.put_object(Bucket=bucket, Key=probe_key, Body=PROBE_BODY)
        return run_probes(probe_table(user, admin, buckets, full, probe_key, other), outcome)
    except answered_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {one_line(exc)}",
                           "check the admin credentials") from None
    finally:
        cleanup(admin, buckets, probe_key, other)


def cleanup(admin: Any, buckets: list[str], probe_key: str, other: str) -> None:
    """Remove verify's probe objects and temporary bucket.

    Raises:
        ProvisionError: S3 refused (other than "already gone"); names what to delete by hand.
    """
    try:
        for bucket in buckets:
            admin.delete_objects(Bucket=bucket, Delete={"Objects": [
                {"Key": probe_key}, {"Key": f"{probe_key}.w"}, {"Key": f"{probe_key}.m"}]})
        listing = admin.list_objects_v2(Bucket=other).get("Contents", [])
        if listing:
            admin.delete_objects(Bucket=other, Delete={"Objects": [{"Key": o["Key"]} for o in listing]})
        admin.delete_bucket(Bucket=other)
    except answered_errors() as exc:
        if error_code(exc) not in ("NoSuchBucket", "404"):
            raise ProvisionError(f"verify could not remove its probe objects: {one_line(exc)}",
                                 f"delete bucket {other} and keys {probe_key}* by hand") from None
