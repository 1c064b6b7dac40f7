"""S3 buckets: create or adopt, then make (or keep) them private, encrypted and owner-enforced.

The secure settings follow https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html:
all four Block Public Access settings, default encryption, and object ownership ``BucketOwnerEnforced`` (ACLs off).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from provision.errors import BadInput, CloudRefused, counted
from provision.ledger import Plan
from provision.models import Resource
from provision.providers.aws.marks import Tags, check_claim, mark, settle
from provision.providers.aws.sdk import answered_errors, error_code

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SECURE_SSE = ("AES256", "aws:kms", "aws:kms:dsse")
"""Default-encryption algorithms accepted as secure on an adopted bucket (SSE-S3 is what we set)."""
OWNER_ENFORCED = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
UNSUPPORTED = ("NotImplemented", "501", "KMSNotConfigured", "XMinioKMSNotConfigured")
"""Error codes of a server that does not implement a setting (MinIO answers ``NotImplemented`` for public access
blocks and ownership controls: https://min.io/docs/minio/linux/reference/s3-api-compatibility.html)."""
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def location(region: str) -> dict[str, Any]:
    """CreateBucket's location argument for ``region`` (none for ``us-east-1``, which refuses one)."""
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def bucket_region(s3: Any, name: str) -> str:
    """The region bucket ``name`` is in (GetBucketLocation: no constraint means ``us-east-1``, the legacy ``EU``
    means ``eu-west-1``; https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html)."""
    constraint = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def survey(s3: Any, tagger: Tags, names: list[str], region: str, state: Any, adopt: bool) -> dict[Any, Any]:
    """Read every bucket before anything changes: whether it exists, its tags, its region and its security
    settings; refuse what must not be touched. Makes no mutating request. The buckets are read concurrently
    (`provision.providers.base.run_concurrently`, 16 at once): over a link of 30 ms, 20 buckets cost ~0.2 s of
    round trips instead of ~3.6 s one after another.

    Args:
        s3: an admin S3 client. tagger: `provision.providers.aws.marks.Tags`. names: the buckets.
        region: the profile's region. state: the grant record. adopt: ``--adopt``.

    Returns:
        ``{("bucket", name): tags}`` per bucket (tags: a dict; None when the bucket does not exist) and, for each
        existing bucket, ``{("settings", name): read_settings(...)}``.

    Raises:
        CloudRefused: a bucket exists but the admin may not see it (HeadBucket 403; bucket names are global:
            https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
        BadInput: a bucket another provision state marked as its own (without ``adopt``); a bucket in another
            region than ``region`` (S3 cannot move a bucket; SigV4 requests signed for the wrong region fail).
        The first error in ``names`` order, once every read has finished.
    """
    from provision.providers.base import run_concurrently

    def look(name: str) -> dict[Any, Any]:
        try:
            head = s3.head_bucket(Bucket=name)
        except answered_errors() as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return {("bucket", name): None}
            if code in ("403", "AccessDenied", "Forbidden"):
                raise CloudRefused(
                    f"bucket {name!r} exists but belongs to someone else (or the admin credentials may not see it)",
                    "choose another bucket name",
                ) from None
            raise
        tags = tagger.tags("bucket", name)
        check_claim(state, adopt, "bucket", name, tags)
        # HeadBucket names the region (x-amz-bucket-region); GetBucketLocation only where a server omits it
        # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html#API_HeadBucket_ResponseSyntax)
        actual = (head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
                  or bucket_region(s3, name))
        if actual != region:
            recorded = state.find("bucket", name)
            if recorded is not None and recorded.created:
                raise BadInput(f"bucket {name!r} was created in {actual}, but this run asks for region {region}",
                               f"re-run with --region {actual} (a bucket cannot move)")
            raise BadInput(f"bucket {name!r} is in {actual}, not in the profile's region {region}",
                           f"pass --region {actual}")
        return {("bucket", name): tags, ("settings", name): read_settings(s3, name)}

    found: dict[Any, Any] = {}
    for answer in run_concurrently([partial(look, name) for name in names]):
        found.update(answer)
    return found


SETTINGS = {
    "public access block": ("get_public_access_block", "NoSuchPublicAccessBlockConfiguration"),
    "default encryption": ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
    "object ownership": ("get_bucket_ownership_controls", "OwnershipControlsNotFoundError"),
}
"""The security settings `secure_bucket` keeps: name -> (the S3 client's read call, the error code of "not set")."""


def read_settings(s3: Any, name: str) -> dict[str, Any]:
    """Read the bucket's `SETTINGS`.

    Args:
        s3: an admin S3 client. name: an existing bucket.

    Returns:
        ``{setting: answer}``: the read call's answer; None when the setting is not set; `UNSUPPORTED` when the
        server does not implement it (MinIO's public access block and ownership controls).

    Raises:
        botocore.exceptions.ClientError: any other refusal.
    """
    out: dict[str, Any] = {}
    for setting, (call, missing) in SETTINGS.items():
        try:
            out[setting] = getattr(s3, call)(Bucket=name)
        except answered_errors() as exc:
            code = error_code(exc)
            if code == missing:
                out[setting] = None
            elif code in UNSUPPORTED:
                out[setting] = UNSUPPORTED
            else:
                raise
    return out


def ensure_bucket(s3: Any, tagger: Tags, name: str, region: str, tags: dict[str, str] | None, state: Any,
                  plan: Plan, settings: dict[str, Any] | None = None) -> None:
    """Create ``name`` (object ownership BucketOwnerEnforced, then the owner mark) or settle the existing one
    (`provision.providers.aws.marks.settle`: adopted, or tracked as this grant's), then secure it.

    Args:
        s3: an admin S3 client. tagger: the tag reader/writer. name: the bucket. region: where a new bucket goes.
        tags: its tags from `survey` (None: it does not exist). state: the grant record. plan: the ledger.
        settings: its `read_settings` from `survey` (None: read them now).

    Raises:
        CloudRefused: the name is taken by another account.
        botocore.exceptions.ClientError: any other refusal.
    """
    if tags is None:
        resource = Resource(kind="bucket", name=name, created=True)
        try:
            plan.create(resource, f"in {region}, object ownership BucketOwnerEnforced", s3.create_bucket,
                        answered_errors(), Bucket=name, ObjectOwnership="BucketOwnerEnforced", **location(region))
        except answered_errors() as exc:
            code = error_code(exc)
            if code == "BucketAlreadyExists":
                raise CloudRefused(f"bucket name {name!r} is taken by another account",
                                   "S3 bucket names are global; choose another") from None
            if code != "BucketAlreadyOwnedByYou":  # our create went through; its first answer was lost
                raise
            plan.record(resource)
            plan.note("create", "bucket", name, f"in {region} (the first answer was lost)")
        tagger.change(plan, "bucket", name, "owner mark: env, grant and state", mark(state), known={})
    else:
        settle(plan, state, tagger, Resource(kind="bucket", name=name, created=False), tags)
    secure_bucket(s3, name, new=tags is None, plan=plan, settings=settings)


def secure_bucket(s3: Any, name: str, new: bool, plan: Plan, settings: dict[str, Any] | None = None) -> None:
    """Public access block (all four), SSE-S3 default encryption unless a secure one is set, ownership
    BucketOwnerEnforced; what is already so is left alone (``no change``); a setting the server does not implement
    (`UNSUPPORTED`, e.g. MinIO's public access block) is skipped and noted, not a failure.

    Args:
        s3: an admin S3 client. name: the bucket. new: created by this run (nothing to read).
        plan: the ledger. settings: the bucket's `read_settings` when already read (None: read them now).
    """
    if new:
        settings = dict.fromkeys(SETTINGS)
    elif settings is None:
        settings = read_settings(s3, name)
    unsupported = [setting for setting, answer in settings.items() if answer is UNSUPPORTED]

    def update(setting: str, call: Callable[..., Any], **kwargs: Any) -> bool:
        """The change through ``plan``; False (and noted) when the server does not implement the setting."""
        try:
            plan.update("bucket", name, setting, call, Bucket=name, **kwargs)
            return True
        except answered_errors() as exc:
            if error_code(exc) not in UNSUPPORTED:
                raise
            unsupported.append(setting.split(":")[0])
            return False

    changed = False
    pab = settings["public access block"]
    if pab is not UNSUPPORTED and (pab is None or pab["PublicAccessBlockConfiguration"] != PUBLIC_ACCESS_BLOCK):
        changed = update("public access block: all four on", s3.put_public_access_block,
                         PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK) or changed
    enc = settings["default encryption"]
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        for r in ({} if enc is UNSUPPORTED else enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    ]
    if enc is not UNSUPPORTED and not any(a in SECURE_SSE for a in algorithms):
        changed = update("default encryption: SSE-S3 (AES256)", s3.put_bucket_encryption,
                         ServerSideEncryptionConfiguration=SSE_S3) or changed
    if not new:  # a new bucket got BucketOwnerEnforced with CreateBucket
        own = settings["object ownership"]
        rules = [r.get("ObjectOwnership") for r in ({} if own is UNSUPPORTED else own or {}).get(
            "OwnershipControls", {}).get("Rules", [])]
        if own is not UNSUPPORTED and rules != ["BucketOwnerEnforced"]:
            changed = update("object ownership: BucketOwnerEnforced (ACLs off)", s3.put_bucket_ownership_controls,
                             OwnershipControls=OWNER_ENFORCED) or changed
    if unsupported:
        plan.note("no change", "bucket", name, f"{', '.join(unsupported)}: not implemented by this server (skipped)")
    if not new and not changed and not unsupported:
        plan.note("no change", "bucket", name, "private, encrypted, owner-enforced")


VERIFY_PREFIX = ".provision-verify/"
"""Key prefix of `provision verify`'s probe objects: provision's own, never data (a verify cut short may leave
some behind; destroy deletes them with the bucket)."""


def holds_objects(s3: Any, bucket: str) -> bool:
    """True when ``bucket`` holds an object or an object version other than verify's probe objects
    (`VERIFY_PREFIX`); False when it is empty, holds only probe objects, or is gone."""
    try:
        versions = s3.list_object_versions(Bucket=bucket, MaxKeys=100)
        current = s3.list_objects_v2(Bucket=bucket, MaxKeys=100)
    except answered_errors() as exc:
        if error_code(exc) in ("NoSuchBucket", "404"):
            return False
        raise
    keys = [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])]
    keys += [o["Key"] for o in current.get("Contents", [])]
    return bool(versions.get("IsTruncated") or current.get("IsTruncated")
                or any(not key.startswith(VERIFY_PREFIX) for key in keys))


def empty_bucket(s3: Any, bucket: str, plan: Plan) -> None:
    """Delete every object version and delete marker in ``bucket`` (only reached with ``--delete-data`` or when
    it is already empty), 1,000 per DeleteObjects request."""
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if items:
            plan.delete("objects", bucket, counted(len(items), 'object version'), s3.delete_objects,
                        Bucket=bucket, Delete={"Objects": items, "Quiet": True})
