"""Onepanel's CVAT workspace: the bucket folders its file syncer and trained models use.

The variables and folder layout are worked out (purely) by `provision.render.onepanel_layout`; this module does the
one piece of data work, through the provider-neutral `provision.objects.ObjectStore`.
"""

from __future__ import annotations

from provision.objects import ObjectStore, open_store
from provision.state import GrantState


def ensure_folders(store: ObjectStore, prefixes: list[str], dry_run: bool = False) -> list[str]:
    """Make sure each folder exists in the bucket as a zero-byte "folder" object (a key ending in ``/``, what the
    cloud consoles create), so the file syncer has something to sync before the first upload.

    A folder object that already exists is left alone (idempotent); objects under a prefix are not enough to
    skip it, because Onepanel's syncer and the consoles look for the folder object itself.

    Args:
        store: the bucket, opened with ``write=True`` (`provision.objects.open_store`): the grant's own key only
            when it is ``full``, else the admin credential.
        prefixes: folder keys, each ending in ``/``, parents first.
        dry_run: only report which folders would be created.

    Returns:
        The folder keys created (or that would be created), in order.

    Raises:
        ValueError: a prefix does not end in ``/``.
        CloudRefused: the store refused a request (names the bucket and folder; earlier folders stay created).
    """
    created = []
    for prefix in prefixes:
        if not prefix.endswith("/"):
            raise ValueError(f"folder key {prefix!r} must end with '/'")
        exists = store.head(prefix) is not None  # stores raise a one-line CloudRefused themselves
        if not exists and not dry_run:
            store.put_bytes(prefix, b"")
        if not exists:
            created.append(prefix)
    return created


def ensure_layout(state: GrantState, bucket: str, prefixes: list[str], dry_run: bool = False) -> tuple[str, list[str]]:
    """`ensure_folders` in ``bucket`` of the stored grant, opened for writing (`provision.objects.open_store`).

    Args:
        state: the environment's state (its grant must hold ``bucket``).
        bucket: the bucket the Onepanel workspace syncs from.
        prefixes: the folder keys (`provision.render.OnepanelLayout.prefixes`).
        dry_run: only report which folders would be created.

    Returns:
        (``<scheme>://<bucket>/`` of the bucket, the folder keys created or that would be created).

    Raises:
        BadInput: ``bucket`` is not one of the grant's.
        CloudRefused: the store refused a request.
    """
    store = open_store(state, bucket, write=True)
    return f"{store.url_scheme}://{store.bucket}/", ensure_folders(store, prefixes, dry_run=dry_run)
