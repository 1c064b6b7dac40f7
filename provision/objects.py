"""Bucket-level data work through the provider seam: list, ranged read, upload.

Commands that move or read data (``manifest``, ``migrate``, ``links``) use an `ObjectStore` obtained from the
provider (`open_store`), never an SDK client directly, so each works for every provider that implements one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provision.errors import BadInput
from provision.state import State


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


def open_store(state: State, bucket: str, write: bool = False) -> ObjectStore:
    """An `ObjectStore` for ``bucket`` of the stored grant.

    Args:
        state: the environment's state (its Grant and inputs).
        bucket: one of the grant's buckets.
        write: True when the caller will write: the grant's own credential is used only when it is ``full``;
            otherwise the admin credential (the read-only key is never given write access).

    Raises:
        BadInput: no grant, or ``bucket`` is not one of its buckets.
    """
    from provision.profiles import Profile
    from provision.providers.base import load_provider

    if state.grant is None:
        raise BadInput(f"nothing provisioned in environment {state.env!r}", "run `provision s3` first")
    if bucket not in state.grant.buckets:
        raise BadInput(f"bucket {bucket!r} is not part of environment {state.env!r}'s grant",
                       f"use one of: {', '.join(state.grant.buckets)}")
    provider = load_provider(Profile.model_validate(state.inputs))
    return provider.objects(state, bucket, write)
