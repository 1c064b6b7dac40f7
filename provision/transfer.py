"""Bulk uploads behind the `ObjectStore` seam: one `Transfer` per store, picked by `transfer_for`.

`provision.migrate` is provider-neutral: it asks a `Transfer` for two things only, what the store's listing would
report as the checksum of a local file once uploaded (`Transfer.checksum`, compared with `ObjectInfo.etag`) and
to upload many files in parallel with byte-level progress (`Transfer.upload`). The two must agree: the checksum is
computed with the same single-part/multipart rule and part size the upload uses.

Providers plug in through their store object's ``transfer(concurrency)`` method, which returns a `Transfer`
(S3: `provision.providers.aws.objects.S3Transfer`). This module imports no cloud SDK.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from provision.errors import BadInput

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
"""Multipart threshold and part size, in bytes, of S3's `Transfer` (fixed: the local checksum depends on it)."""
READ_SIZE = 1 * MiB
"""Bytes read at a time when hashing a local file (files are never read whole into memory)."""


@dataclass(frozen=True)
class UploadJob:
    """One local file to upload.

    Attributes:
        key: the object key.
        path: the local file.
        size: its size in bytes when it was scanned.
        stamp: the file's identity when scanned: (device, inode, size, mtime ns, ctime ns); any write to the
            file changes it (used to trust a remembered checksum).
    """

    key: str
    path: Path
    size: int
    stamp: tuple[int, ...] = ()


class Transfer(Protocol):
    """Parallel uploads into one bucket, and the local checksum the bucket's listing will show for them.

    Attributes:
        concurrency: parallel requests actually used (may be lower than asked, e.g. capped by a connection pool).
        cloud_errors: exception types that mean "the cloud refused or could not be reached" (for reporting).
        checksum_kind: names the checksum scheme (e.g. ``s3-etag/8388608``): a remembered checksum is reused only
            for the same kind.
    """

    concurrency: int
    cloud_errors: tuple[type[BaseException], ...]
    checksum_kind: str

    def checksum(self, path: Path, size: int) -> str:
        """The checksum the store's listing (`ObjectInfo.etag`) reports for ``path`` once uploaded by `upload`.

        Args:
            path: the local file, read as a stream.
            size: its size in bytes (decides single-part vs multipart).

        Raises:
            OSError: the file cannot be read.
        """
        ...

    def upload(self, jobs: Iterable[UploadJob], on_bytes: Callable[[int], None],
               on_done: Callable[[UploadJob, BaseException | None, str | None], None]) -> None:
        """Upload every job, in parallel, and return when all have finished.

        Args:
            jobs: the files; consumed lazily in the calling thread (submission blocks while the queue is full).
            on_bytes: called from worker threads with the bytes sent since the last call (negative when a retry
                rewinds a stream).
            on_done: called once per job from a worker thread as ``on_done(job, error, checksum)``: error is None
                on success or the exception (after the SDK's own retries); checksum is what the store's listing
                will report for the new object, when the store said so (S3: the ETag of the response), else None.

        Raises:
            KeyboardInterrupt: in-flight uploads are cancelled (multipart uploads aborted) before it propagates.
        """
        ...


def run_bounded(jobs: Iterable[UploadJob], put: Callable[[UploadJob], None], concurrency: int, name: str,
                skip: Callable[[UploadJob], bool] | None = None) -> None:
    """Run ``put(job)`` for every job on ``concurrency`` threads, consuming ``jobs`` lazily: at most
    ``4 × concurrency`` jobs are queued at a time, so a huge tree is never held in memory.

    ``put`` must report its own outcome (it is called once per job and should not raise; whatever it raises is lost
    to the pool). Jobs for which ``skip(job)`` is true are not submitted (the caller handles them).

    Raises:
        KeyboardInterrupt: queued jobs are cancelled and running ones finished before it propagates.
    """
    slots = threading.BoundedSemaphore(concurrency * 4)

    def run(job: UploadJob) -> None:
        try:
            put(job)
        finally:
            slots.release()

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=name)
    try:
        for job in jobs:
            if skip is not None and skip(job):
                continue
            slots.acquire()
            pool.submit(run, job)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def transfer_for(store: Any, concurrency: int) -> Transfer:
    """The `Transfer` for ``store``: the store's own ``transfer(concurrency)`` (see
    `provision.objects.ObjectStore.transfer`).

    Args:
        store: from `provision.objects.open_store`, opened with ``write=True``.
        concurrency: parallel requests wanted (≥ 1).

    Raises:
        BadInput: the store has no ``transfer`` method (its provider has no bulk upload yet).
    """
    own = getattr(store, "transfer", None)
    if not callable(own):
        raise BadInput(f"migrating into {getattr(store, 'url_scheme', '?')}:// storage is not supported yet",
                       "use an environment whose provider supports `provision migrate`")
    return own(concurrency)  # type: ignore[no-any-return]
