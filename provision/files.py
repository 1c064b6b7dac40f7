"""Atomic, private file writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: Path, mode: int = 0o600, *, text: bool = False, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Stream a new content into ``path`` atomically: yields a file open on a temporary file in the same directory;
    when the block ends normally it is flushed, fsync'ed, chmod'ed to ``mode`` and renamed over ``path``. When the
    block raises (including KeyboardInterrupt), the temporary file is removed and ``path`` is left untouched.

    The file never exists with looser permissions than ``mode`` (the temporary file is created 0600 and chmod'ed
    before the rename), and readers see either the old or the new content, never a mix or a truncated one.

    Args:
        path: destination file; its directory must exist.
        mode: permission bits of the result (default 0600: owner read/write only).
        text: yield a text stream (``encoding``, ``\\n`` line endings) instead of a binary one.
        encoding: the text encoding when ``text`` is True.

    Yields:
        The open temporary file (binary, or text when ``text``).

    Raises:
        OSError: the directory is not writable, the disk is full, ...; and whatever the block raises.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        fh: IO[Any] = (os.fdopen(fd, "w", encoding=encoding, newline="\n") if text else os.fdopen(fd, "wb"))
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically (see `atomic_open`): a temporary file in the same directory, fsync,
    then rename; never looser than ``mode`` on disk, never half-written.

    Args:
        path: destination file; its directory must exist.
        data: the complete new content, in bytes.
        mode: permission bits of the result (default 0600: owner read/write only).

    Raises:
        OSError: the directory is not writable, the disk is full, ...
    """
    with atomic_open(path, mode) as fh:
        fh.write(data)


def file_md5(path: Path, chunk: int = 1024 * 1024) -> bytes:
    """The MD5 digest (16 raw bytes) of the file at ``path``, read ``chunk`` bytes at a time (default 1 MiB).

    MD5 here is the checksum the object stores report (S3 ETag of a single-part upload, Azure Content-MD5,
    GCS md5Hash), not a security measure.

    Raises:
        OSError: the file cannot be read.
    """
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.digest()
