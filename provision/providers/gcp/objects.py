"""Data in Cloud Storage: `GcsObjects` (a `provision.objects.ObjectStore`) and `GcsTransfer` (a
`provision.transfer.Transfer` for ``provision migrate``), over one google-cloud-storage client.

Cloud Storage's ``md5Hash`` (base64 MD5 of an object uploaded whole; absent for composite objects) is what a
listing reports, as hex: https://cloud.google.com/storage/docs/hashes-etags.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from provision.errors import refusing
from provision.files import file_md5
from provision.providers.gcp.sdk import TIMEOUT, cloud_errors, storage_retry


def md5_hex(md5_base64: str | None) -> str:
    """Cloud Storage's base64 ``md5Hash`` as lowercase hex ("" when the object has none, e.g. composite objects)."""
    return base64.b64decode(md5_base64).hex() if md5_base64 else ""


def guess_type(key: str) -> str:
    """The Content-Type an object gets from its key's extension (``application/octet-stream`` when unknown)."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class GcsObjects:
    """`provision.objects.ObjectStore` over one google-cloud-storage client and one bucket.

    Every method raises `provision.errors.CloudRefused` (operation, bucket, key, Google's message) for a refused
    request or an unreachable endpoint, after the SDK's own retries (`provision.providers.gcp.sdk.storage_retry`).

    ``ObjectInfo.etag`` is the hex MD5 of the object (`md5_hex`), or "" for objects without one.

    Args:
        client: a ``google.cloud.storage.Client``.
        bucket: the bucket name.
    """

    url_scheme = "google"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._bucket = client.bucket(bucket)

    @refusing("Cloud Storage", "ListObjects", cloud_errors)
    def list(self, prefix: str = "") -> Iterator[Any]:
        """Objects under ``prefix`` in key order, fetched a page at a time."""
        from provision.objects import ObjectInfo

        for blob in self.client.list_blobs(self.bucket, prefix=prefix or None, retry=storage_retry(),
                                           timeout=TIMEOUT):
            yield ObjectInfo(blob.name, int(blob.size or 0), md5_hex(blob.md5_hash))

    @refusing("Cloud Storage", "GetObject", cloud_errors)
    def head(self, key: str) -> Any:
        """The object's size and MD5, or None when it does not exist."""
        from provision.objects import ObjectInfo

        blob = self._bucket.get_blob(key, retry=storage_retry(), timeout=TIMEOUT)
        if blob is None:
            return None
        return ObjectInfo(key, int(blob.size or 0), md5_hex(blob.md5_hash))

    @refusing("Cloud Storage", "GetObjectMedia", cloud_errors)
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (b"" past the end)."""
        if length <= 0:
            return b""
        from google.api_core.exceptions import RequestRangeNotSatisfiable

        try:
            data = self._bucket.blob(key).download_as_bytes(start=start, end=start + length - 1, checksum=None,
                                                            retry=storage_retry(), timeout=TIMEOUT)
        except RequestRangeNotSatisfiable:  # empty object, or start past the end
            return b""
        return bytes(data[:length])

    @refusing("Cloud Storage", "GetObjectMedia", cloud_errors)
    def read(self, key: str) -> bytes:
        """The whole object."""
        return bytes(self._bucket.blob(key).download_as_bytes(retry=storage_retry(), timeout=TIMEOUT))

    @refusing("Cloud Storage", "InsertObject", cloud_errors)
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace ``key``."""
        self._bucket.blob(key).upload_from_string(data, content_type=content_type or guess_type(key),
                                                  retry=storage_retry(), timeout=TIMEOUT)

    @refusing("Cloud Storage", "InsertObject", cloud_errors)
    def put_file(self, key: str, path: Any) -> None:
        """Upload a local file (the SDK switches to a resumable upload above 8 MiB)."""
        self.upload(key, path)

    def upload(self, key: str, path: Any) -> Any:
        """Upload a local file as ``key`` with the SDK's errors as they are; returns the blob (its ``md5_hash``
        set from the answer)."""
        blob = self._bucket.blob(key)
        blob.upload_from_filename(str(path), content_type=guess_type(key), retry=storage_retry(), timeout=TIMEOUT)
        return blob

    def transfer(self, concurrency: int) -> GcsTransfer:
        """A `GcsTransfer` into this bucket (``provision migrate``)."""
        return GcsTransfer(self, concurrency)


class GcsTransfer:
    """`provision.transfer.Transfer` for Cloud Storage: one upload per file from a thread pool (the SDK uses a
    resumable upload above 8 MiB, and retries within our budget); the checksum is the hex MD5 of the content,
    which is what `GcsObjects.list` reports for an object uploaded whole.

    Args:
        store: the bucket's `GcsObjects` (with a credential that may write).
        concurrency: parallel uploads wanted; capped at `POOL`, the connection pool google-cloud-storage's HTTP
            session keeps per host (more threads would open and drop a connection per request).
    """

    POOL = 10

    def __init__(self, store: GcsObjects, concurrency: int) -> None:
        self.store = store
        self.concurrency = max(1, min(concurrency, self.POOL))
        self.cloud_errors = cloud_errors()
        self.checksum_kind = "gcs-md5"

    def checksum(self, path: Path, size: int) -> str:
        """Hex MD5 of the file (`provision.files.file_md5`, read 1 MiB at a time)."""
        from provision.transfer import READ_SIZE

        return file_md5(path, READ_SIZE).hex()

    def upload(self, jobs: Iterable[Any], on_bytes: Callable[[int], None],
               on_done: Callable[[Any, BaseException | None, str | None], None]) -> None:
        """Upload every job in parallel; ``on_done`` gets the object's MD5 (hex) from the upload's response."""
        from provision.transfer import run_bounded

        def put(job: Any) -> None:
            try:
                blob = self.store.upload(job.key, job.path)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported per file
                on_done(job, exc, None)
            else:
                on_bytes(job.size)
                on_done(job, None, md5_hex(blob.md5_hash) or None)

        run_bounded(jobs, put, self.concurrency, "provision-gcs-put")
