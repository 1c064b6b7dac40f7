"""Pure policy builders: IAM policy and trust documents. No I/O; golden-tested.

Source of the action lists: shared/REFERENCE.md §2 (least-privilege, bucket-scoped policies).
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
