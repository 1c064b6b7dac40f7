"""What the targets share about a Grant: credential-kind names, the S3-compatible storage providers, the choice of
one of its buckets, and whether a file made from it holds a secret."""

from __future__ import annotations

from provision.errors import BadInput
from provision.models import Grant
from provision.output import secrets_of

S3_COMPATIBLE = {"minio"}
"""Supervisely storage providers spoken over the S3 API: the only ones whose ``remote_links.yml`` connection and
CVAT ``specific_attributes`` carry a region (and, for CVAT, an ``endpoint_url``)."""

AUTH_NAMES = {"key_pair": "an access key", "sas": "a SAS token", "role": "an IAM role", "key_file": "a key file",
              "ambient": "no secret (an ambient identity)"}
"""How each credential kind is named in messages."""


def grant_bucket(grant: Grant, bucket: str | None) -> str:
    """``bucket`` if it is one of ``grant``'s buckets, or the grant's first bucket when ``bucket`` is None.

    Raises:
        BadInput: ``bucket`` is not part of the grant (the message lists the grant's buckets).
    """
    if bucket is None:
        return grant.buckets[0]
    if bucket not in grant.buckets:
        raise BadInput(f"bucket {bucket!r} is not part of this grant", f"use one of: {', '.join(grant.buckets)}")
    return bucket


def holds_secret(grant: Grant) -> bool:
    """True when ``grant`` carries a secret string (secret key, SAS token) that rendered files may hold."""
    return bool(secrets_of(grant))
