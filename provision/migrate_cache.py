"""migrate's checksum cache: the checksum each local file had when it was last hashed or uploaded, keyed by the
file's identity, so a re-run hashes only what changed (a SQLite file next to the state)."""

from __future__ import annotations

import enum
import os
import threading
from pathlib import Path
from typing import Any

from provision.names import check_env_name
from provision.state import state_dir
from provision.transfer import UploadJob


def stamp_of(st: os.stat_result) -> tuple[int, ...]:
    """A file's identity for `ChecksumCache`: (device, inode, size, mtime ns, ctime ns). Any write to the file
    changes its ctime, which no user tool can set back."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cache_path(env: str) -> Path:
    """Where `migrate` remembers the checksums of an environment's local files: ``<state dir>/<env>.migrate-cache
    .sqlite`` (the state directory of `provision.state.state_dir`). ``provision destroy`` deletes it with the state.

    Args:
        env: the environment name.

    Returns:
        The absolute path (the file may not exist).

    Raises:
        BadInput: an invalid environment name (`provision.names.check_env_name`).
    """
    return state_dir() / f"{check_env_name(env)}.migrate-cache.sqlite"


_default_cache_path = cache_path  # `migrate` has a parameter of the same name


class ChecksumCache:
    """Checksums of local files remembered between runs, so a re-run does not read every file again.

    An entry is (absolute path, `stamp_of` the file, checksum kind, checksum) and is used only while the file's
    stamp and the kind are unchanged. Entries come from hashing a file, or from the store's answer to its upload
    (S3: the ETag of the response, for a file whose stamp did not change during the upload). A SQLite file in the
    state directory (mode 0600); it holds paths and checksums, no secret. A cache that cannot be opened is
    ignored (everything is hashed).

    Args:
        path: the SQLite file; None for no cache at all.
        writable: False for a dry run: entries are read, never written.
    """

    def __init__(self, path: Path | None, writable: bool = True) -> None:
        self.writable = writable
        self._db: Any = None
        self._pending: list[tuple[bytes, str, str, str]] = []
        self._lock = threading.Lock()
        if path is None or (not writable and not path.exists()):
            return
        import sqlite3

        try:
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(path)
            self._db.execute("CREATE TABLE IF NOT EXISTS checksums (path BLOB PRIMARY KEY, stamp TEXT NOT NULL, "
                             "kind TEXT NOT NULL, checksum TEXT NOT NULL)")
        except (sqlite3.Error, OSError):
            self._db = None

    def get(self, job: UploadJob, kind: str) -> str | None:
        """The remembered checksum of ``job``'s file, if its stamp and ``kind`` still match. Main thread only."""
        if self._db is None or not job.stamp:
            return None
        row = self._db.execute("SELECT stamp, kind, checksum FROM checksums WHERE path = ?",
                               (os.fsencode(job.path),)).fetchone()
        if row is None or row[0] != _stamp_text(job.stamp) or row[1] != kind:
            return None
        return str(row[2])

    def get_many(self, jobs: list[UploadJob], kind: str) -> dict[Path, str]:
        """The remembered checksums of those ``jobs`` whose stamp and ``kind`` still match, by path (one query per
        500 files). Main thread only."""
        found: dict[Path, str] = {}
        if self._db is None:
            return found
        import sqlite3

        wanted = {os.fsencode(j.path): j for j in jobs if j.stamp}
        paths = list(wanted)
        try:
            for start in range(0, len(paths), 500):
                chunk = paths[start:start + 500]
                rows = self._db.execute("SELECT path, stamp, kind, checksum FROM checksums WHERE path IN "
                                        f"({','.join('?' * len(chunk))})", chunk).fetchall()
                for path, stamp, row_kind, checksum in rows:
                    job = wanted[path]
                    if row_kind == kind and stamp == _stamp_text(job.stamp):
                        found[job.path] = str(checksum)
        except sqlite3.Error:
            return {}
        return found

    def add(self, job: UploadJob, kind: str, checksum: str) -> None:
        """Remember ``checksum`` for ``job``'s file as of ``job.stamp`` (any thread; written by `flush`)."""
        if self._db is not None and self.writable and job.stamp:
            with self._lock:
                self._pending.append((os.fsencode(job.path), _stamp_text(job.stamp), kind, checksum))

    def flush(self) -> None:
        """Write the entries added so far. Main thread only."""
        if self._db is None:
            return
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            import sqlite3

            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO checksums VALUES (?, ?, ?, ?)", rows)
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Flush and close."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None


def _stamp_text(stamp: tuple[int, ...]) -> str:
    return ":".join(str(n) for n in stamp)


class _Default(enum.Enum):
    CACHE = "the environment's cache"


DEFAULT_CACHE = _Default.CACHE
"""`migrate`'s default ``cache_path``: `cache_path` of the state's environment."""


