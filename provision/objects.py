"""Bucket-level data work through the provider seam: list, ranged read, upload.

Commands that move or read data (``manifest``, ``migrate``, ``links``) use an `ObjectStore` obtained from the
provider (`open_store`, `open_stores`), never an SDK client directly, so each works for every provider that
implements one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provision.errors import BadInput
from provision.models import Grant
from provision.state import GrantState

if TYPE_CHECKING:
    from provision.transfer import Transfer


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing.

    Attributes:
        key: the object key (blob name).
        size: size in bytes.
        etag: the store's ETag without quotes (for S3 single-part uploads, the hex MD5 of the content).
    """

    key: str
    size: int
    etag: str = ""


class ObjectStore(Protocol):
    """One bucket (Azure: container) seen through one credential.

    Every method raises `provision.errors.CloudRefused` (one line naming the operation, the bucket and the cloud's
    error code) when the cloud refuses the request or cannot be reached after the SDK's own retries; callers never
    see an SDK exception type.

    Attributes:
        bucket: the bucket name.
        url_scheme: the scheme Supervisely's links files use for this provider (``s3``, ``azure``, ``google``).
    """

    bucket: str
    url_scheme: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order, streamed page by page (bounded memory)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and ETag, or None when it does not exist."""
        ...

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from byte offset ``start`` (fewer at the end of the object)."""
        ...

    def read(self, key: str) -> bytes:
        """The whole object."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace ``key`` with ``data``."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file, in parts when it is large (the SDK's transfer manager decides)."""
        ...

    def transfer(self, concurrency: int) -> Transfer:
        """A `provision.transfer.Transfer` (bulk parallel uploads into this bucket, and the checksum its listing
        shows for an uploaded file), for ``provision migrate``; ``concurrency`` is the number of parallel requests
        wanted (≥ 1). Optional: a store without it cannot be migrated into (`provision.transfer.transfer_for`)."""
        ...


def grant_of(state: GrantState) -> Grant:
    """The Grant of a loaded state: the one "has a credential" check of every command that uses it.

    Raises:
        BadInput: the environment holds no credential yet.
    """
    if state.grant is None:
        raise BadInput(f"environment {state.env!r} has no credential yet",
                       f"run `provision s3|azure|gcs --env {state.env} ...` first")
    return state.grant


def _check_buckets(state: GrantState, buckets: list[str]) -> None:
    grant = grant_of(state)
    for bucket in buckets:
        if bucket not in grant.buckets:
            raise BadInput(f"bucket {bucket!r} is not in the grant of environment {state.env!r}",
                           f"use one of: {', '.join(grant.buckets)}")


def open_stores(state: GrantState, buckets: list[str], write: bool = False) -> list[ObjectStore]:
    """One `ObjectStore` per bucket of the stored grant, all from one provider object, so they share its SDK
    session and (for the same credential) its client and connection pool.

    Args:
        state: the environment's state (its Grant and inputs).
        buckets: some of the grant's buckets (containers on Azure); every name is checked before anything else.
        write: True when the caller will write: the grant's own credential is used only when it is ``full``;
            otherwise the admin credential (the read-only key is never given write access).

    Returns:
        The stores, in the order of ``buckets``.

    Raises:
        BadInput: no grant, or a name that is not one of its buckets; a stored profile that no longer validates.
    """
    from provision.profiles import Profile
    from provision.providers.base import load_provider

    _check_buckets(state, buckets)
    provider = load_provider(Profile.model_validate(state.inputs))
    return [provider.objects(state, bucket, write) for bucket in buckets]


def open_store(state: GrantState, bucket: str, write: bool = False) -> ObjectStore:
    """An `ObjectStore` for ``bucket`` of the stored grant (see `open_stores`, which shares one SDK client across
    several buckets).

    Raises:
        BadInput: no grant, or ``bucket`` is not one of its buckets.
    """
    return open_stores(state, [bucket], write)[0]
