"""Atomic, private file writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, fsync, then rename.

    The file never exists with looser permissions than ``mode`` (the temporary file is created 0600 and
    chmod'ed before the rename), and readers see either the old or the new content, never a mix.

    Args:
        path: destination file; its directory must exist.
        data: the complete new content, in bytes.
        mode: permission bits of the result (default 0600: owner read/write only).

    Raises:
        OSError: the directory is not writable, the disk is full, ...
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
