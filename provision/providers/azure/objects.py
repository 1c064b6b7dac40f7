"""Blob data for the data commands (migrate, links, manifest): `BlobObjects` (a `provision.objects.ObjectStore`)
and `BlobTransfer` (a `provision.transfer.Transfer`). Every blob uploaded gets its Content-MD5 set, so the
listing's checksum equals the local file's MD5 for single-put and block uploads alike
(https://learn.microsoft.com/rest/api/storageservices/put-block-list: Content-MD5 of a block blob is only what the
uploader sets)."""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from provision.errors import refusing
from provision.files import file_md5
from provision.providers.azure.sdk import SINGLE_PUT_SIZE, azure_errors, error_code


def content_settings(key: str, md5: bytes | None, content_type: str | None = None) -> Any:
    """azure-storage-blob ``ContentSettings`` for ``key``: its Content-Type (``content_type``, else guessed from
    the name) and Content-MD5 (``md5``, 16 raw bytes, or None)."""
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type=content_type or mimetypes.guess_type(key)[0],
                           content_md5=bytearray(md5) if md5 else None)


class BlobObjects:
    """`provision.objects.ObjectStore` over one azure-storage-blob ContainerClient.

    Every method raises `provision.errors.CloudRefused` (operation, container, key, Azure's message) for a
    refused request or an unreachable endpoint, after azure-core's own retries.

    ``ObjectInfo.etag`` is the blob's Content-MD5 in hex (what `BlobTransfer.checksum` computes for a local file),
    or the service ETag when the blob has no Content-MD5.
    """

    url_scheme = "azure"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @staticmethod
    def _info(name: str, props: Any) -> Any:
        from provision.objects import ObjectInfo

        md5 = props.content_settings.content_md5 if props.content_settings else None
        etag = bytes(md5).hex() if md5 else str(props.etag or "").strip('"')
        return ObjectInfo(name, int(props.size or 0), etag)

    @refusing("Azure Blob", "ListBlobs", azure_errors)
    def list(self, prefix: str = "") -> Iterator[Any]:
        """Blobs whose name starts with ``prefix``, in name order, one page (≤ 5,000) at a time."""
        for props in self.client.list_blobs(name_starts_with=prefix or None):
            yield self._info(props.name, props)

    @refusing("Azure Blob", "GetBlobProperties", azure_errors)
    def head(self, key: str) -> Any:
        """The blob's size and checksum, or None when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self.client.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return self._info(key, props)

    @refusing("Azure Blob", "GetBlob", azure_errors)
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (b"" past the end)."""
        if length <= 0:
            return b""
        from azure.core.exceptions import HttpResponseError

        try:
            return self.client.get_blob_client(key).download_blob(offset=start, length=length).readall()
        except HttpResponseError as exc:
            if error_code(exc) == "InvalidRange":  # empty blob, or start past the end
                return b""
            raise

    @refusing("Azure Blob", "GetBlob", azure_errors)
    def read(self, key: str) -> bytes:
        """The whole blob."""
        return self.client.get_blob_client(key).download_blob().readall()  # type: ignore[no-any-return]

    @refusing("Azure Blob", "PutBlob", azure_errors)
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace ``key`` with ``data`` (Content-MD5 set)."""
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        self.client.upload_blob(key, data, overwrite=True, content_settings=content_settings(key, md5, content_type))

    @refusing("Azure Blob", "PutBlob", azure_errors)
    def put_file(self, key: str, path: Any) -> None:
        """Upload a local file (Content-MD5 set; blocks of the SDK's size, 4 in parallel, above its threshold)."""
        md5 = file_md5(Path(path))
        with open(path, "rb") as fh:
            self.client.upload_blob(key, fh, length=os.fstat(fh.fileno()).st_size, overwrite=True,
                                    content_settings=content_settings(key, md5), max_concurrency=4)

    def transfer(self, concurrency: int) -> BlobTransfer:
        """The `BlobTransfer` for this container (``concurrency`` parallel requests)."""
        return BlobTransfer(self.client, concurrency)


class BlobTransfer:
    """`provision.transfer.Transfer` into one container: every blob gets its Content-MD5 set on upload, so the
    listing's etag (`BlobObjects`) equals `checksum` (the hex MD5 of the file). Files over
    `provision.providers.azure.sdk.SINGLE_PUT_SIZE` go in blocks, up to 4 in parallel; retries are azure-core's.

    Args:
        client: a ContainerClient with write access.
        concurrency: files uploaded in parallel (≥ 1).
    """

    checksum_kind = "md5"

    def __init__(self, client: Any, concurrency: int) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.cloud_errors: tuple[type[BaseException], ...] = azure_errors()

    def checksum(self, path: Path, size: int) -> str:
        """The hex MD5 of ``path`` (what `BlobObjects.list` reports once `upload` set it as Content-MD5)."""
        return file_md5(path).hex()

    def upload(self, jobs: Iterable[Any], on_bytes: Callable[[int], None],
               on_done: Callable[[Any, BaseException | None, str | None], None]) -> None:
        """Upload every job in parallel with its Content-MD5 (see `provision.transfer.Transfer.upload`)."""
        from provision.transfer import run_bounded

        def put(job: Any) -> None:
            sent = [0]

            def progress(current: int, total: int | None) -> None:
                delta = current - sent[0]
                sent[0] = current
                if delta:
                    on_bytes(delta)

            try:
                md5 = file_md5(job.path)
                with open(job.path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    self.client.upload_blob(job.key, fh, length=size, overwrite=True,
                                            content_settings=content_settings(job.key, md5),
                                            max_concurrency=4 if size > SINGLE_PUT_SIZE else 1,
                                            progress_hook=progress)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported per file
                if sent[0]:
                    on_bytes(-sent[0])
                on_done(job, exc, None)
            else:
                on_done(job, None, md5.hex())

        run_bounded(jobs, put, self.concurrency, "provision-blob")
