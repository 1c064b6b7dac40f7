"""Pure policy builders: IAM policy and trust documents. No I/O; golden-tested.

Source of the action lists: the Amazon S3 actions reference
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html) and Supervisely's storage
guide, which adds ``s3:ListBucketMultipartUploads`` for files over 4 GB
(https://docs.supervisely.com/enterprise-edition/advanced-tuning/s3).
"""

from __future__ import annotations

import json
from typing import Any

from provision.models import Access

READ_BUCKET_ACTIONS = ["s3:GetBucketLocation", "s3:ListBucket"]
READ_OBJECT_ACTIONS = ["s3:GetObject"]
FULL_BUCKET_ACTIONS = ["s3:ListBucketMultipartUploads"]
FULL_OBJECT_ACTIONS = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:ListMultipartUploadParts", "s3:PutObject"]

IAM_USER_INLINE_LIMIT = 2048
"""Total size of a user's inline policies, in characters (IAM quotas page)."""
IAM_ROLE_INLINE_LIMIT = 10240
"""Total size of a role's inline policies, in characters (IAM quotas page)."""


def s3_policy(buckets: list[str], access: Access) -> dict[str, Any]:
    """The inline IAM policy for ``buckets`` and nothing else.

    Args:
        buckets: bucket names (at least one).
        access: ``readonly``: ListBucket + GetBucketLocation on the buckets, GetObject on their objects.
            ``full``: readonly plus ListBucketMultipartUploads on the buckets and PutObject, DeleteObject,
            AbortMultipartUpload, ListMultipartUploadParts on their objects.

    Returns:
        The policy document as a dict (``Version`` 2012-10-17, one statement for buckets, one for objects).
    """
    bucket_actions = list(READ_BUCKET_ACTIONS)
    object_actions = list(READ_OBJECT_ACTIONS)
    if access == Access.full:
        bucket_actions += FULL_BUCKET_ACTIONS
        object_actions += FULL_OBJECT_ACTIONS
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ProvisionBuckets",
                "Effect": "Allow",
                "Action": sorted(bucket_actions),
                "Resource": [f"arn:aws:s3:::{b}" for b in buckets],
            },
            {
                "Sid": "ProvisionObjects",
                "Effect": "Allow",
                "Action": sorted(object_actions),
                "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],
            },
        ],
    }


def ec2_trust_policy() -> dict[str, Any]:
    """The trust policy that lets EC2 instances assume a role (for IAM-role mode's instance profile)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }


def policy_json(document: dict[str, Any]) -> str:
    """Serialise a policy compactly (IAM counts the characters against its inline-policy quota)."""
    return json.dumps(document, separators=(",", ":"))


def same_policy(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two policy documents grant the same thing, ignoring list order and single-item lists."""
    return _normal(a) == _normal(b)


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        items = sorted((_normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return items[0] if len(items) == 1 else items
    return value


# ---- Azure ----------------------------------------------------------------------------------------------------
SAS_PERMISSIONS = {Access.readonly: "rl", Access.full: "racwdl"}
"""Account SAS permissions (``sp``) per access level: read + list; or read, add, create, write, delete, list.
Source: https://learn.microsoft.com/en-us/rest/api/storageservices/create-account-sas and CVAT's Azure guide
(Read + List)."""
SAS_SERVICES = "b"
"""Account SAS services (``ss``): Blob only."""
SAS_RESOURCE_TYPES = "co"
"""Account SAS resource types (``srt``): container + object (CVAT reads container properties on attach)."""

AZURE_BLOB_ROLES = {
    Access.readonly: ("Storage Blob Data Reader", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"),
    Access.full: ("Storage Blob Data Contributor", "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),
}
"""Built-in Azure RBAC role (name, role definition id) per access level, assigned on each container for
``--keyless``. Source: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage."""


def sas_permissions(access: Access) -> str:
    """The account SAS ``sp`` string for ``access`` (``rl`` or ``racwdl``)."""
    return SAS_PERMISSIONS[access]


# ---- Google Cloud Storage -------------------------------------------------------------------------------------
GCS_ROLES = {
    Access.readonly: ("roles/storage.objectViewer", "roles/storage.legacyBucketReader"),
    Access.full: ("roles/storage.objectAdmin", "roles/storage.legacyBucketReader"),
}
"""Bucket-level IAM roles per access level (legacyBucketReader gives ``storage.buckets.get``, which CVAT's attach
check needs). Source: https://cloud.google.com/storage/docs/access-control/iam-roles."""


def gcs_bindings(access: Access, member: str) -> list[dict[str, object]]:
    """The bucket IAM bindings to ensure for ``member`` (``serviceAccount:<email>``): one per role of `GCS_ROLES`,
    each ``{"role": ..., "members": [member]}``. Pure: merge them into the bucket's policy with `merge_bindings`."""
    return [{"role": role, "members": [member]} for role in GCS_ROLES[access]]


def merge_bindings(bindings: list[dict[str, object]], wanted: list[dict[str, object]],
                   drop_member: str | None = None) -> tuple[list[dict[str, object]], bool]:
    """Merge ``wanted`` into a bucket policy's ``bindings`` (read-modify-write), leaving every other member and
    role alone; conditional bindings are never touched.

    Args:
        bindings: the current bindings (each ``{"role", "members", ["condition"]}``), not modified.
        wanted: bindings that must hold (from `gcs_bindings`).
        drop_member: remove this member from unconditional bindings of roles not in ``wanted`` (an access level
            that changed from full to readonly), or None.

    Returns:
        (new bindings, changed): ``changed`` is False when ``bindings`` already held everything.
    """
    out = [dict(b, members=list(b.get("members", []))) for b in bindings]  # type: ignore[call-overload]
    changed = False
    wanted_roles = {w["role"] for w in wanted}
    if drop_member:
        for b in out:
            if "condition" not in b and b["role"] not in wanted_roles and drop_member in b["members"]:
                b["members"].remove(drop_member)
                changed = True
        out = [b for b in out if b["members"]]
    for w in wanted:
        target = next((b for b in out if b["role"] == w["role"] and "condition" not in b), None)
        if target is None:
            out.append({"role": w["role"], "members": list(w["members"])})  # type: ignore[call-overload]
            changed = True
            continue
        for member in w["members"]:  # type: ignore[attr-defined]
            if member not in target["members"]:
                target["members"].append(member)
                changed = True
    return out, changed
