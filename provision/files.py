"""Atomic, private file writes; bounded reads of existing files; all-or-nothing replacement of a set of files."""

from __future__ import annotations

import itertools
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from provision.errors import BadInput, PartialFailure


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
    fd, tmp = _temporary(path)
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


def _temporary(path: Path) -> tuple[int, str]:
    """Create the temporary file for a new content of ``path``: ``.<name>.<pid>.<random>.tmp`` next to it, mode
    0600, after removing the ones earlier writers that were killed left there (`remove_orphan_temporaries`).
    Returns the open descriptor and the file's path."""
    remove_orphan_temporaries(path)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")


def remove_orphan_temporaries(path: Path, *, every_name: bool = False) -> list[Path]:
    """Remove the temporary files that writers of ``path`` killed between writing and renaming left next to it
    (a SIGKILL or power loss runs no clean-up; such a file may hold a secret, such as a copy of the state).

    A temporary file is ``.<name>.<pid>.<random>.tmp`` (`atomic_open`, `replace_all`); it is an orphan when no
    process ``pid`` runs on this machine. Files of running processes (other users' included), of this process, and
    anything else are left alone.

    Args:
        path: the file whose temporary files to look for; its directory need not exist.
        every_name: look for the orphans of every file of ``path``'s directory, not only ``path``'s (for
            directories only provision writes to, such as the state directory).

    Returns:
        The paths removed (empty when none).
    """
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        found = _TEMPORARY.match(entry.name)
        if found is None or not (every_name or found["name"] == path.name):
            continue
        pid = int(found["pid"])
        if pid in (0, os.getpid()) or process_running(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")
"""A temporary file of `_temporary`: ``.<name>.<pid>.<random>.tmp`` (mkstemp's random part holds no dot)."""


def process_running(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine, whoever owns it (another user's answers EPERM)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


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


# ---- reading and replacing a set of files -------------------------------------------------------------------------
MAX_INPUT_BYTES = 1024 * 1024
"""The largest existing file (bytes) `read_regular` accepts: configuration files are a few KiB; anything bigger is
refused rather than parsed."""

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _refuse_irregular(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise BadInput(f"{path} is {kind}, not a regular file", "move it away, or pass another --out directory")


def destination_stat(path: Path) -> os.stat_result | None:
    """The status of the file at ``path`` (a symlink followed), or None when there is none (a dangling symlink
    included: its target will be created).

    Raises:
        BadInput: ``path`` is a directory, FIFO, device or socket (never opened: opening a FIFO would block).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    _refuse_irregular(path, st)
    return st


def read_regular(path: Path, limit: int = MAX_INPUT_BYTES) -> bytes | None:
    """The bytes of the regular file at ``path`` (a symlink followed), or None when there is none.

    The file is checked with ``stat`` before it is opened, opened non-blocking and checked again on the open
    descriptor, so a FIFO or device is never read (nor waited on), even if swapped in meanwhile.

    Args:
        path: the file.
        limit: the largest size accepted, in bytes (default `MAX_INPUT_BYTES`, 1 MiB).

    Raises:
        BadInput: not a regular file, or larger than ``limit`` bytes.
        OSError: the file cannot be read (permissions, ...).
    """
    if destination_stat(path) is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        _refuse_irregular(path, os.fstat(fd))
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"{path} is larger than {limit // 1024} KiB, which no configuration file this tool edits is",
                       "check that --out is the right directory, or move the file away")
    return data


@dataclass
class Replacement:
    """One file of a `replace_all` set.

    Attributes:
        path: the destination as given; when it is a symlink, its target is replaced and the link stays.
        data: the complete new content.
        secret: the content holds a secret: the result is never more open than 0600.
        backup: set by `replace_all` to where the previous content was copied (None for a new file).
        mode: set by `replace_all` to the permission bits written.
    """

    path: Path
    data: bytes
    secret: bool = True
    backup: Path | None = None
    mode: int | None = None


@dataclass
class _Staged:
    item: Replacement
    real: Path
    old: os.stat_result | None
    old_data: bytes | None = None
    tmp: str | None = None


def _stage(real: Path, data: bytes, mode: int, owner: os.stat_result | None) -> str:
    """Write ``data`` to a new temporary file next to ``real``, with ``mode`` and ``owner``'s uid/gid. Returns its
    path. Raises OSError (the temporary file removed)."""
    fd, tmp = _temporary(real)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            if owner is not None:
                st = os.fstat(fh.fileno())
                if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                    os.fchown(fh.fileno(), owner.st_uid, owner.st_gid)
            os.fchmod(fh.fileno(), mode)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


_backup_counter = itertools.count()


def _backup(path: Path, data: bytes) -> Path:
    """Copy ``data`` (the previous content of ``path``) to a new ``<name>.provision-backup-<UTC time to the
    microsecond>[-N]`` next to ``path``, mode 0600, created with O_EXCL so no backup ever overwrites another."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    for attempt in range(1000):
        suffix = f"-{next(_backup_counter)}" if attempt else ""
        backup = path.with_name(f"{path.name}.provision-backup-{stamp}{suffix}")
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            os.unlink(backup)
            raise
        return backup
    raise FileExistsError(f"no free backup name for {path}")


def _mode_for(old: os.stat_result | None, secret: bool) -> int:
    if old is None:
        return 0o600
    return stat.S_IMODE(old.st_mode) & (0o600 if secret else 0o7777)


def replace_all(items: list[Replacement]) -> None:
    """Replace every file of ``items`` or none: all new contents are staged first (temporary files in the
    destinations' directories, fsync'ed, with their final mode and owner), every previous content is copied to a
    backup (`Replacement.backup`), and only then are the temporary files renamed over the destinations.

    An existing file keeps its owner, group and mode (made no looser than 0600 when ``secret``); a new file is 0600.
    A symlink is followed: its target is replaced atomically and the link stays. A destination that is not a
    regular file (directory, FIFO, device, socket) is refused before anything is written.

    Args:
        items: the files, written in this order.

    Raises:
        BadInput: a destination is not a regular file, or staging failed (not writable, owner cannot be kept, disk
            full): nothing was written and no backup is left.
        PartialFailure: a rename failed after an earlier one succeeded; the earlier files were put back from their
            backups (the message says when that failed too, and where the backups are).
    """
    staged = [_Staged(item, Path(os.path.realpath(item.path)), destination_stat(item.path)) for item in items]
    current: _Staged | None = None
    try:
        for current in staged:
            if current.old is not None:
                current.old_data = read_regular(current.item.path, limit=max(MAX_INPUT_BYTES, current.old.st_size))
            current.item.mode = _mode_for(current.old, current.item.secret)
            current.tmp = _stage(current.real, current.item.data, current.item.mode, current.old)
        for current in staged:
            if current.old_data is not None:
                current.item.backup = _backup(current.item.path, current.old_data)
    except OSError as exc:
        _discard(staged)
        assert current is not None
        raise BadInput(f"cannot write {current.item.path}: {exc.strerror or exc}",
                       "pass a writable --out directory, or run as the files' owner") from None
    except BaseException:
        _discard(staged)
        raise
    for done, current in enumerate(staged):
        try:
            os.replace(current.tmp, current.real)  # type: ignore[arg-type]
            current.tmp = None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if not done:
                _discard(staged)
                raise BadInput(f"cannot write {current.item.path}: {reason}", "pass a writable --out directory"
                               ) from None
            _discard(staged[done:])
            failed = _restore(staged[:done])
            message = f"cannot write {current.item.path} ({reason}) after writing {done} other file(s)"
            if failed:
                raise PartialFailure(f"{message}; restoring {', '.join(failed)} failed too",
                                     "put the files back from their .provision-backup-* copies") from None
            for s in staged[:done]:
                _unlink(s.item.backup)
                s.item.backup = None
            raise PartialFailure(f"{message}; they were restored, nothing changed",
                                 "fix the cause and run render-env again") from None
    for directory in {s.real.parent for s in staged}:
        _fsync_dir(directory)


def _restore(done: list[_Staged]) -> list[str]:
    """Put back the previous content of each already-replaced file (remove it if it was new). Returns the paths
    that could not be restored."""
    failed = []
    for s in done:
        try:
            if s.old_data is None:
                os.unlink(s.real)
            else:
                tmp = _stage(s.real, s.old_data, stat.S_IMODE(s.old.st_mode), s.old)  # type: ignore[union-attr]
                os.replace(tmp, s.real)
        except OSError:
            failed.append(str(s.item.path))
    return failed


def _discard(staged: list[_Staged]) -> None:
    for s in staged:
        _unlink(s.tmp)
        s.tmp = None
        _unlink(s.item.backup)
        s.item.backup = None


def _unlink(path: str | Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
