"""Move an existing Supervisely install's local storage into the buckets of a stored grant.

Supervisely keeps its files under ``<DATA_PATH>/storage/<prefix>-public/`` and ``<prefix>-private/``; on a cloud
these become the buckets of the same names, with keys = paths relative to each folder. `migrate`:

1. checks that every bucket of the grant has its folder (`check_folders`), before any cloud call;
2. scans the folders and lists each bucket once (one paginated LIST, no HEAD per object);
3. for the local files whose key exists remotely with the same size, compares the checksum the listing shows with
   the local one the upload would produce (`provision.transfer.Transfer.checksum`: the S3 ETag, multipart rule
   included; remembered in a `ChecksumCache` for files unchanged since they were last hashed or uploaded) and
   skips those that match: a re-run uploads nothing, an interrupted run resumes where it stopped;
4. uploads the rest in parallel (multipart for large files) with the SDK's retries, and reports each file that
   still failed.

The local folders are only read, never written. Everything goes through `provision.objects.open_stores` and
`provision.transfer.transfer_for` (the store's own ``transfer()``), so a provider whose store implements those
gets ``migrate`` for free.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provision.errors import BadInput, CloudRefused, one_line
from provision.migrate_cache import DEFAULT_CACHE, ChecksumCache, _Default, _default_cache_path, stamp_of
from provision.objects import ObjectStore, grant_of, open_stores
from provision.state import GrantState
from provision.transfer import Transfer, UploadJob, transfer_for

DEFAULT_CONCURRENCY = 16
"""Parallel requests (uploads, parts, and local hashing) unless ``--concurrency`` says otherwise (the CLI's default
too). Chosen from ``bench/migrate.py`` at 30 ms / 100 Mbit/s: provision spends ~5 ms of CPU per small upload, so
one process tops out near 200 uploads/s; at a round trip plus service time of 50–80 ms that takes 10–16 requests in
flight, and more bought nothing measurable (32 and 64: within 7 % on small files, equal on 1–3 MB images, which the
bandwidth decides) while a larger pool holds more part buffers (peak RSS 110 → 135 MiB on images)."""
MAX_CONCURRENCY = 64
MAX_KEY_BYTES = 1024
"""Longest object key S3 (and GCS) accept, in UTF-8 bytes (Azure allows 1,024 characters)."""


@dataclass
class Failure:
    """A file that was not uploaded.

    Attributes:
        key: the object key (for a name that cannot be a key: the path relative to the folder).
        error: one line, what went wrong.
    """

    key: str
    error: str


@dataclass
class Planned:
    """A file `migrate` uploads (or would upload, in a dry run).

    Attributes:
        job: the key, local path and size in bytes.
        reason: ``new`` (no such key), ``size differs`` or ``checksum differs``.
    """

    job: UploadJob
    reason: str


@dataclass
class BucketReport:
    """What happened to one folder → bucket pair. Sizes are in bytes.

    Attributes:
        bucket: the bucket name (= the folder's name).
        folder: the local folder.
        files, bytes: local files found and their total size.
        skipped, skipped_bytes: already in the bucket with the same size and checksum.
        planned: the files to upload, in upload order.
        uploaded, uploaded_bytes: uploaded by this run (0 in a dry run).
        failed: files not uploaded (unusable name, unreadable, or refused after the SDK's retries).
    """

    bucket: str
    folder: Path
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    skipped_bytes: int = 0
    planned: list[Planned] = field(default_factory=list)
    uploaded: int = 0
    uploaded_bytes: int = 0
    failed: list[Failure] = field(default_factory=list)

    @property
    def to_upload(self) -> int:
        """Number of files planned for upload."""
        return len(self.planned)

    @property
    def to_upload_bytes(self) -> int:
        """Bytes planned for upload."""
        return sum(p.job.size for p in self.planned)


@dataclass
class MigrateReport:
    """The result of `migrate`.

    Attributes:
        env: the environment.
        data_path: Supervisely's DATA_PATH as given (absolute).
        dry_run: True when nothing was uploaded on purpose.
        concurrency: parallel requests used.
        buckets: one report per folder → bucket pair, in the grant's bucket order.
        seconds: wall-clock duration of the whole run (scan, list, check, upload).
        upload_seconds: wall-clock duration of the upload phase alone.
    """

    env: str
    data_path: Path
    dry_run: bool
    concurrency: int
    buckets: list[BucketReport] = field(default_factory=list)
    seconds: float = 0.0
    upload_seconds: float = 0.0

    def total(self, name: str) -> int:
        """Sum of the integer attribute (or property) ``name`` over the buckets; ``failed`` counts failures."""
        if name == "failed":
            return sum(len(b.failed) for b in self.buckets)
        return sum(int(getattr(b, name)) for b in self.buckets)

    @property
    def failures(self) -> list[tuple[str, Failure]]:
        """Every failure as (bucket, failure)."""
        return [(b.bucket, f) for b in self.buckets for f in b.failed]

    @property
    def bytes_per_second(self) -> float:
        """Uploaded bytes per second of the upload phase (0.0 when nothing was uploaded)."""
        uploaded = self.total("uploaded_bytes")
        return uploaded / self.upload_seconds if uploaded and self.upload_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict: totals at the top (``files``, ``bytes``, ``skipped``,
        ``skipped_bytes``, ``to_upload``, ``to_upload_bytes``, ``uploaded``, ``uploaded_bytes``, ``failed``
        (a count), ``seconds``, ``upload_seconds``, ``bytes_per_second``), ``failures`` (bucket, key, error),
        and per-bucket figures under ``buckets``. A dry run also lists ``would_upload`` (bucket, key, size, reason).
        """
        names = ("files", "bytes", "skipped", "skipped_bytes", "to_upload", "to_upload_bytes", "uploaded",
                 "uploaded_bytes", "failed")
        doc: dict[str, Any] = {"env": self.env, "data_path": str(self.data_path), "dry_run": self.dry_run,
                               "concurrency": self.concurrency}
        doc.update({n: self.total(n) for n in names})
        doc.update(seconds=round(self.seconds, 3), upload_seconds=round(self.upload_seconds, 3),
                   bytes_per_second=round(self.bytes_per_second))
        doc["failures"] = [{"bucket": b, "key": f.key, "error": f.error} for b, f in self.failures]
        doc["buckets"] = [dict({"bucket": b.bucket, "folder": str(b.folder)},
                               **{n: (len(b.failed) if n == "failed" else getattr(b, n)) for n in names})
                          for b in self.buckets]
        if self.dry_run:
            doc["would_upload"] = [{"bucket": b.bucket, "key": p.job.key, "size": p.job.size, "reason": p.reason}
                                   for b in self.buckets for p in b.planned]
        return doc


class Progress(Protocol):
    """Where `migrate` reports progress (the CLI passes a rich progress bar; None means silent)."""

    def phase(self, name: str, total_bytes: int, total_files: int) -> None:
        """A new phase starts (``checking``: hashing local files; ``uploading``), with its totals in bytes/files."""
        ...

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        """Progress within the phase: ``nbytes`` bytes (may be negative on a retry) and ``files`` files done.
        Called from worker threads."""
        ...


class _Silent:
    def phase(self, name: str, total_bytes: int, total_files: int) -> None:
        pass

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        pass


def unmigrated(state: GrantState, data_path: Path) -> tuple[int, int]:
    """How many files (and bytes) under ``DATA_PATH/storage/<bucket>/`` of the grant's buckets no complete
    ``provision migrate`` of this grant copied: every file when none is recorded for ``data_path``, else those
    changed since the last complete run started (`provision.state.GrantState.migrated`). Folders that do not
    exist count as empty.

    Returns:
        (files, bytes).
    """
    since = state.migrated.get(str(data_path.absolute()))
    cutoff = since.timestamp() if since is not None else None
    files = size = 0
    for bucket in (state.grant.buckets if state.grant else []):
        folder = data_path / "storage" / bucket
        if not folder.is_dir():
            continue
        for root, _dirs, names in os.walk(folder):
            for name in names:
                try:
                    st = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                if cutoff is None or max(st.st_mtime, st.st_ctime) >= cutoff:
                    files += 1
                    size += st.st_size
    return files, size


def check_folders(state: GrantState, data_path: Path) -> list[tuple[str, Path]]:
    """Pair each bucket of the stored grant with its folder ``<data_path>/storage/<bucket>``.

    Args:
        state: the environment's state; its grant names the buckets.
        data_path: Supervisely's DATA_PATH (the directory holding ``storage/``).

    Returns:
        (bucket, folder) pairs in the grant's bucket order.

    Raises:
        BadInput: no grant; ``data_path/storage`` is not a directory; a bucket has no folder (the message names
            the missing folders and the ones that are there, e.g. when the state's prefix is not this install's).
    """
    grant_of(state)
    storage = data_path / "storage"
    if not data_path.is_dir():
        raise BadInput(f"--data-path {data_path} is not a directory",
                       "pass Supervisely's DATA_PATH (default /supervisely/data)")
    if not storage.is_dir():
        raise BadInput(f"{storage} does not exist: {data_path} is not a Supervisely DATA_PATH",
                       "pass the directory that holds storage/ (default /supervisely/data)")
    buckets = list(state.grant.buckets)
    missing = [b for b in buckets if not (storage / b).is_dir()]
    if missing:
        present = sorted(p.name for p in storage.iterdir() if p.is_dir())
        there = ", ".join(present) if present else "no folders"
        if len(missing) == len(buckets) and present:
            raise BadInput(
                f"the buckets of environment {state.env!r} ({', '.join(buckets)}) do not match the folders in "
                f"{storage} ({there})",
                "provision buckets (containers on Azure) named like the folders (provision s3|azure|gcs --prefix "
                "P), or pass this install's --data-path")
        raise BadInput(f"missing folder(s) {', '.join(str(storage / b) for b in missing)} for bucket(s) "
                       f"{', '.join(missing)} (found: {there})",
                       "pass the DATA_PATH of the install these buckets are for")
    return [(b, storage / b) for b in buckets]


def scan(folder: Path) -> tuple[list[UploadJob], list[Failure]]:
    """Every regular file under ``folder`` (recursively) as an upload job, key = path relative to ``folder``
    with ``/`` separators.

    Symbolic links to files are followed; symbolic links to directories are not (no loops), nor are sockets,
    FIFOs and devices. Nothing is opened or written.

    Args:
        folder: the local folder.

    Returns:
        (jobs sorted by key, failures): a name that cannot be an object key (not valid UTF-8, or a key over
        `MAX_KEY_BYTES` bytes) or an entry that cannot be read is a failure, not an exception.
    """
    jobs: list[UploadJob] = []
    failures: list[Failure] = []
    stack = [(folder, "")]
    while stack:
        directory, rel = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            failures.append(Failure(rel or ".", one_line(exc)))
            continue
        for entry in entries:
            key = f"{rel}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), key + "/"))
                    continue
                if not entry.is_file(follow_symlinks=True):
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                failures.append(Failure(key, one_line(exc)))
                continue
            try:
                encoded = key.encode("utf-8")
            except UnicodeEncodeError:
                failures.append(Failure(os.fsencode(key).decode("utf-8", "backslashreplace"),
                                        "file name is not valid UTF-8, so it cannot be an object key"))
                continue
            if len(encoded) > MAX_KEY_BYTES:
                failures.append(Failure(key, f"key is {len(encoded)} bytes, over the {MAX_KEY_BYTES}-byte limit"))
                continue
            jobs.append(UploadJob(key, Path(entry.path), st.st_size, stamp_of(st)))
    jobs.sort(key=lambda j: j.key.encode("utf-8"))
    return jobs, failures


def migrate(state: GrantState, data_path: Path, *, dry_run: bool = False, concurrency: int = DEFAULT_CONCURRENCY,
            progress: Progress | None = None,
            cache_path: Path | None | _Default = DEFAULT_CACHE) -> MigrateReport:
    """Copy ``<data_path>/storage/<bucket>/`` into each bucket of the grant, skipping what is already there.

    Uses a write-capable credential (`open_stores` with ``write=True``: the grant's own when it is ``full``,
    else the admin one; one SDK client for all buckets). "Already there" = same key, same size, and the listing's
    checksum equals the local one computed the way the upload would produce it (S3: hex MD5, or MD5 of part MD5s
    + ``-N`` from 8 MiB), read from the checksum cache when the file has not changed since it was last hashed or
    uploaded. Remote objects that have no local file are left alone.

    The buckets are listed in background threads from the start; the folders are scanned and the cache is read
    while the first pages are on their way.

    Args:
        state: the environment's state (read only; the caller holds its lock).
        data_path: Supervisely's DATA_PATH.
        dry_run: list and check, upload nothing; the report's ``planned`` says what would be uploaded.
        concurrency: parallel requests (1..`MAX_CONCURRENCY`); also the number of files hashed at once.
        progress: receives the ``checking`` and ``uploading`` phases; None for silence.
        cache_path: the `ChecksumCache` file; by default `cache_path` of ``state.env``; None to hash every
            candidate.

    Returns:
        The `MigrateReport` (sizes in bytes, durations in seconds). Failed files are in it, not raised: the
        caller decides (the CLI exits 4 when any remain).

    Raises:
        BadInput: see `check_folders`; ``concurrency`` out of range; the provider has no bulk upload.
        CloudRefused: a bucket could not be listed (credentials, permission, no such bucket, unreachable).
    """
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BadInput(f"--concurrency {concurrency} is out of range", f"use 1 to {MAX_CONCURRENCY}")
    started = time.monotonic()
    pairs = check_folders(state, data_path)
    cache_file = _default_cache_path(state.env) if isinstance(cache_path, _Default) else cache_path
    progress = progress or _Silent()
    report = MigrateReport(env=state.env, data_path=data_path, dry_run=dry_run, concurrency=concurrency)
    stores = open_stores(state, [bucket for bucket, _ in pairs], write=not dry_run)
    transfers = [transfer_for(store, concurrency) for store in stores]
    report.buckets = [BucketReport(bucket=bucket, folder=folder) for bucket, folder in pairs]
    report.concurrency = min(transfer.concurrency for transfer in transfers)
    work = list(zip(report.buckets, transfers, strict=True))

    cache = ChecksumCache(cache_file, writable=not dry_run)
    try:
        to_hash = _plan(state.env, stores, work, cache)
        _check(to_hash, cache, concurrency, progress)
        for br in report.buckets:  # in key order
            br.planned.sort(key=lambda p: p.job.key.encode("utf-8"))
        if not dry_run:
            _upload(report, work, cache, progress)
    finally:
        cache.close()
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _Candidate:
    br: BucketReport
    transfer: Transfer
    job: UploadJob
    etag: str


def _plan(env: str, stores: list[ObjectStore], work: list[tuple[BucketReport, Transfer]],
          cache: ChecksumCache) -> list[_Candidate]:
    """List every bucket once (one thread per bucket, started first) while the folders are scanned and the
    cache is read, then sort the files: ``new`` and ``size differs`` go to ``planned``; same key and size with a
    remembered checksum are decided at once; the rest are returned, to be hashed."""
    locals_: list[Future[dict[str, UploadJob]]] = [Future() for _ in stores]
    stop = threading.Event()  # set when the main thread gives up (Ctrl-C, an error): the listings end early
    pool = ThreadPoolExecutor(max(1, len(stores)), thread_name_prefix="provision-list")
    try:
        listings = [pool.submit(_remote, env, store, br, transfer, local, stop)
                    for store, (br, transfer), local in zip(stores, work, locals_, strict=True)]
        scanned = []
        for (br, _), local in zip(work, locals_, strict=True):
            jobs, br.failed = scan(br.folder)
            br.files = len(jobs) + len(br.failed)
            br.bytes = sum(j.size for j in jobs)
            local.set_result({j.key: j for j in jobs})
            scanned.append(jobs)
        remembered = [cache.get_many(jobs, transfer.checksum_kind)
                      for jobs, (_, transfer) in zip(scanned, work, strict=True)]
        remotes = [listing.result() for listing in listings]
    except BaseException:
        stop.set()
        for local in locals_:
            if not local.done():
                local.set_exception(KeyboardInterrupt())
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    to_hash = []
    for (br, transfer), jobs, remote, known in zip(work, scanned, remotes, remembered, strict=True):
        for job in jobs:
            found = remote.get(job.key)
            if found is None:
                br.planned.append(Planned(job, "new"))
            elif found[0] != job.size:
                br.planned.append(Planned(job, "size differs"))
            else:
                candidate = _Candidate(br, transfer, job, found[1])
                checksum = known.get(job.path)
                if checksum is None:
                    to_hash.append(candidate)
                else:
                    _decide(candidate, checksum)
    return to_hash


def _remote(env: str, store: ObjectStore, br: BucketReport, transfer: Transfer,
            local: Future[dict[str, UploadJob]], stop: threading.Event) -> dict[str, tuple[int, str]]:
    """(size, checksum) by key of the bucket's objects that have a local file (runs in a listing thread; ends
    early when ``stop`` is set)."""
    remote: dict[str, tuple[int, str]] = {}
    wanted: dict[str, UploadJob] | None = None
    try:
        for obj in store.list():
            if wanted is None:
                wanted = local.result()  # the folder is scanned while the first page is on its way
            if stop.is_set():
                break
            if obj.key in wanted:
                remote[obj.key] = (obj.size, obj.etag)
    except CloudRefused:
        raise
    except transfer.cloud_errors as exc:  # a store that does not translate its SDK's errors
        raise CloudRefused(f"could not list bucket {br.bucket!r}: {one_line(exc)}",
                           "check that it exists and that the credential may list it "
                           f"(provision verify --env {env})") from None
    return remote


def _decide(c: _Candidate, local: str) -> None:
    if local == c.etag:
        c.br.skipped += 1
        c.br.skipped_bytes += c.job.size
    else:
        c.br.planned.append(Planned(c.job, "checksum differs"))


def _check(to_hash: list[_Candidate], cache: ChecksumCache, concurrency: int, progress: Progress) -> None:
    """Hash the same-size candidates that have no remembered checksum (in parallel) and compare with the listing's:
    skip matches, plan the rest (``checksum differs``)."""
    progress.phase("checking", sum(c.job.size for c in to_hash), len(to_hash))
    lock = threading.Lock()

    def check(c: _Candidate) -> None:
        try:
            local = c.transfer.checksum(c.job.path, c.job.size)
        except OSError as exc:
            with lock:
                c.br.failed.append(Failure(c.job.key, one_line(exc)))
        else:
            with lock:
                _decide(c, local)
            cache.add(c.job, c.transfer.checksum_kind, local)
        progress.advance(c.job.size, 1)

    if concurrency == 1 or len(to_hash) <= 1:
        for c in to_hash:
            check(c)
    else:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="provision-check") as pool:
            for _ in pool.map(check, to_hash):
                pass
    cache.flush()


def _upload(report: MigrateReport, work: list[tuple[BucketReport, Transfer]], cache: ChecksumCache,
            progress: Progress) -> None:
    """Upload every planned file, bucket after bucket; record successes and failures in the report, and the
    store's checksum of each new object in the cache."""
    progress.phase("uploading", report.total("to_upload_bytes"), report.total("to_upload"))
    lock = threading.Lock()
    started = time.monotonic()
    try:
        for br, transfer in work:
            if not br.planned:
                continue

            def done(job: UploadJob, error: BaseException | None, checksum: str | None,
                     br: BucketReport = br, kind: str = transfer.checksum_kind) -> None:
                with lock:
                    if error is None:
                        br.uploaded += 1
                        br.uploaded_bytes += job.size
                    else:
                        br.failed.append(Failure(job.key, one_line(error)))
                if error is None and checksum:
                    try:
                        unchanged = stamp_of(os.stat(job.path)) == job.stamp
                    except OSError:
                        unchanged = False
                    if unchanged:
                        cache.add(job, kind, checksum)
                progress.advance(0, 1)

            transfer.upload(_jobs(br, cache), progress.advance, done)
    finally:
        report.upload_seconds = time.monotonic() - started


def _jobs(br: BucketReport, cache: ChecksumCache) -> Iterator[UploadJob]:
    """The planned jobs, largest first (the large ones, uploaded in parts, start at once and the tail is made of
    small files), flushing the cache every 500 submissions (this runs in the main thread)."""
    for n, planned in enumerate(sorted(br.planned, key=lambda p: -p.job.size), 1):
        if n % 500 == 0:
            cache.flush()
        yield planned.job


