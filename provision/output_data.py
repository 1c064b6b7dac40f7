"""Reports of the data and sandbox commands (migrate, links, manifest, cvat attach, sandbox): tables, progress
bars and JSON, printed through `provision.output`."""

from __future__ import annotations

import functools
import threading
from typing import Any

from provision.errors import counted
from provision.output import console, emit_json, say


def sandbox_endpoints(info: Any) -> dict[str, str | None]:
    """Service -> endpoint of a running sandbox (`provision.sandbox.SandboxInfo`; None for a service it runs
    without)."""
    return {"s3": f"{info.s3.endpoint_url} (S3, IAM, STS)",
            "minio": f"{info.minio.endpoint_url} (MinIO's admin API and S3: provision s3 --env sandbox --issuer minio)"
            if info.minio else None,
            "azure": f"{info.azure.account_url()} (account {info.azure.account.name}, HTTPS, CA {info.azure.ca_file})"
            if info.azure else None,
            "gcs": f"{info.gcs.endpoint_url} (project {info.gcs.project}, no IAM)" if info.gcs else None}


def sandbox_services(info: Any) -> list[dict[str, Any]]:
    """The services of a running sandbox as data: one ``{"service", "endpoint", "port", "pid"}`` per service (s3,
    minio, azure, gcs; ``endpoint`` and ``port`` None for one it runs without; ``pid`` the sandbox server's, which
    serves them all)."""
    from urllib.parse import urlparse

    endpoints = {"s3": info.s3.endpoint_url, "minio": info.minio.endpoint_url if info.minio else None,
                 "azure": info.azure.account_url() if info.azure else None,
                 "gcs": info.gcs.endpoint_url if info.gcs else None}
    return [{"service": service, "endpoint": url, "port": urlparse(url).port if url else None, "pid": info.pid}
            for service, url in endpoints.items()]


def sandbox_up_report(info: Any, started: bool, json_out: bool) -> None:
    """Print the result of `provision.sandbox.up`: started or already running, and each service's endpoint (JSON:
    ``{"started", "running", "pid", "started_at", "services": sandbox_services}``)."""
    if json_out:
        emit_json({"started": started, "running": True, "pid": info.pid, "started_at": info.started_at.isoformat(),
                   "services": sandbox_services(info)})
        return
    say(f"sandbox {'started' if started else 'already running'} (pid {info.pid}); use --env sandbox with "
        "`provision s3`, `provision azure` or `provision gcs`")
    for service, where in sandbox_endpoints(info).items():
        if service == "minio" and where is None:
            continue
        missing = "not available (Azurite not found and not installable: install Node.js 20+ and restart the sandbox)"
        say(f"  {service:<6} {where or missing}")


def sandbox_down_report(was_running: bool, json_out: bool) -> None:
    """Print the result of `provision.sandbox.down` (JSON: ``{"stopped": was_running, "running": false}``)."""
    if json_out:
        emit_json({"stopped": was_running, "running": False})
    else:
        say("sandbox stopped" if was_running else "sandbox was not running")


def sandbox_status_report(info: Any, json_out: bool) -> None:
    """Print whether the sandbox runs (``info`` None: it does not), since when, and where (JSON: ``{"running",
    "pid", "started_at", "services": sandbox_services}``)."""
    if json_out:
        emit_json({"running": info is not None, "pid": info.pid if info else None,
                   "started_at": info.started_at.isoformat() if info else None,
                   "services": sandbox_services(info) if info else []})
    elif info:
        say(f"running (pid {info.pid}, since {info.started_at:%Y-%m-%d %H:%M} UTC)")
        for service, where in sandbox_endpoints(info).items():
            say(f"  {service:<6} {where or 'not available'}")
    else:
        say("not running; start it with: provision sandbox up")


def links_summary(report: Any, out: Any, env: str, rendered_supervisely: bool) -> None:
    """Print the counts of a `provision.links.LinksReport` (one line each, however long), the keys that could not
    be listed, and a hint to render remote_links.yml unless ``rendered_supervisely``."""
    counts = ", ".join(f"{name}: {n}" for name, n in report.links.items())
    line = functools.partial(console().print, soft_wrap=True)  # one line each, however long the path
    line(f"{counted(report.total, 'link')} ({counts})" + (f" written to {out}" if out is not None else ""))
    unlinkable = sum(report.unlinkable.values())
    if unlinkable:
        line(f"[yellow]skipped {counted(unlinkable, 'key')} holding a line break: a links file cannot list them[/]")
    if not rendered_supervisely:
        line(f"hint: Supervisely reads these links through remote_links.yml; run `provision render-env --env {env} "
             "--out DIR` to write it")


def links_report(report: Any, out: Any, links: list[str] | None) -> None:
    """The ``--json`` document of ``provision links``: ``{"total", "links_per_bucket", "unlinkable", "out",
    "links"}`` (``links``: the lines themselves when they were not written to ``out``, else None)."""
    emit_json({"total": report.total, "links_per_bucket": report.links, "unlinkable": report.unlinkable,
               "out": str(out) if out is not None else None, "links": links})


def cvat_attach_report(result: Any, env: str, json_out: bool) -> None:
    """Print the `provision.cvat.AttachResult` of ``cvat attach`` (or one JSON document)."""
    if json_out:
        emit_json(dict(result.as_dict(), env=env))
        return
    verb = "created" if result.action == "create" else "updated"
    say(f"{verb} CVAT cloud storage [bold]{result.id}[/] ({result.display_name}) for bucket {result.resource} "
        f"at {result.url} (CVAT {result.server_version})")


class ProgressBar:
    """A transient rich bar on stderr ("<label> [bar] done/total ETA"), shown only on a terminal and only once
    the first count arrives; safe to feed from worker threads. Use as a context manager.

    Args:
        label: the text before the bar.
    """

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def _started(self) -> Any:
        with self._lock:
            if self._bar is None:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                self._bar = Progress(TextColumn(self._label), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=console(), transient=True,
                                     disable=not console().is_terminal)
                self._bar.start()
                self._task = self._bar.add_task(self._label, total=None)
            return self._bar

    def total(self, count: int) -> None:
        """Set how many items there are."""
        self._started().update(self._task, total=count)

    def advance(self, *_item: Any) -> None:
        """Count one item done (any arguments are ignored, so it fits per-item callbacks)."""
        self._started().advance(self._task)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


def manifest_report(run: Any, env: str, json_out: bool) -> None:
    """Print what ``provision manifest`` did (`provision.manifest.ManifestRun`): images, related images, skipped
    keys, bytes read, the images left out, where it was written and uploaded, and the next step; or one JSON
    document."""
    manifest, bucket, uploaded = run.manifest, run.bucket, run.uploaded
    stats = manifest.stats
    if json_out:
        emit_json({"env": env, "bucket": bucket, "prefix": manifest.prefix, "out": str(run.out), "uploaded": uploaded,
                   "stats": vars(stats), "problems": [vars(p) for p in manifest.problems]})
        return
    import shlex

    from rich.markup import escape

    share = f" ({stats.bytes_read / stats.bytes_total:.1%})" if stats.bytes_total else ""
    where = f"{run.url_scheme}://{bucket}/{escape(manifest.prefix)}"
    say(f"{counted(stats.images, 'image')} in {where}"
        + (f", {counted(stats.related, 'related image')} in their meta" if stats.related else "")
        + f"; {counted(stats.skipped, 'non-image key')} skipped; read {human_bytes(stats.bytes_read)} of "
        f"{human_bytes(stats.bytes_total)}{share} in {counted(stats.requests, 'request')}")
    for problem in manifest.problems:
        say(f"[yellow]not in the manifest:[/] {escape(problem.key)}: {escape(problem.error)}")
    if not stats.images:
        say(f"[yellow]no readable images under {where}[/]" + (": nothing uploaded" if run.upload else ""))
    say(f"wrote {run.out}")
    if uploaded:
        who = ("the grant's credential" if run.own_credential
               else "the admin credential (the grant's credential may not write)")
        say(f"uploaded {run.url_scheme}://{bucket}/{escape(uploaded)} with {who}")
        say(f"Next: provision cvat attach --env {env} --url URL --token T --manifest {shlex.quote(uploaded)}")


def human_bytes(count: float) -> str:
    """``count`` bytes as B, KiB, MiB, GiB or TiB with one decimal (bytes as a whole number)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class MigrateProgress:
    """A rich progress bar on the given console: bytes done/total, bytes/s, ETA, files done/total.

    Use as a context manager around `provision.migrate.migrate`; pass it as ``progress``.
    """

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), DownloadColumn(binary_units=True),
            TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            console=console(), transient=False,
        )
        self._task: Any = None
        self._started = False
        self._files = 0
        self._pending = 0
        self._lock = threading.Lock()

    def __enter__(self) -> MigrateProgress:
        return self  # the bar appears with the first phase that has work (nothing printed otherwise)

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self._progress.stop()

    def phase(self, name: str, total_bytes: int, total_files: int) -> None:
        """Start a phase (``checking``, ``uploading``) of ``total_bytes`` bytes in ``total_files`` files; a phase
        with no file shows no bar."""
        if self._task is not None:
            self._progress.stop_task(self._task)
        if total_files == 0:
            self._task = None
            return
        if not self._started:
            self._progress.start()
            self._started = True
        self._files = self._pending = 0
        self._task = self._progress.add_task(name, total=total_bytes or None, files=0, total_files=total_files)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        """Count ``nbytes`` bytes (negative on a retry) and ``files`` files done; called from worker threads."""
        if self._task is None:
            return
        with self._lock:  # progress arrives every few KiB: hand it to rich per MiB or finished file
            self._files += files
            self._pending += nbytes
            if files or abs(self._pending) >= 1024 * 1024:
                self._progress.update(self._task, advance=self._pending, files=self._files)
                self._pending = 0


def migrate_report(report: Any, json_out: bool, limit: int = 20) -> None:
    """Print a `provision.migrate.MigrateReport`: the summary table (per bucket: files, bytes, skipped, uploaded
    or would upload, failed), the failed files (at most ``limit``), and in a dry run the first ``limit`` files that
    would be uploaded; or, with ``json_out``, its JSON document."""
    if json_out:
        emit_json(report.to_json())
        return
    from rich.markup import escape
    from rich.table import Table

    verb = "would upload" if report.dry_run else "uploaded"
    title = "migrate — dry run: nothing uploaded" if report.dry_run else f"migrate — env {report.env}"
    table = Table(title=title, title_justify="left")
    for column in ("bucket", "folder", "files", "bytes", "skipped", verb, "failed"):
        table.add_column(column, justify="right" if column not in ("bucket", "folder") else "left")
    for b in report.buckets:
        sent = (b.to_upload, b.to_upload_bytes) if report.dry_run else (b.uploaded, b.uploaded_bytes)
        table.add_row(b.bucket, escape(str(b.folder)), str(b.files), human_bytes(b.bytes),
                      f"{b.skipped} ({human_bytes(b.skipped_bytes)})", f"{sent[0]} ({human_bytes(sent[1])})",
                      f"[red]{len(b.failed)}[/]" if b.failed else "0")
    line = console().print
    line(table)
    total, size = report.total, human_bytes
    if report.dry_run:
        planned = [(b.bucket, p) for b in report.buckets for p in b.planned]
        for bucket, p in planned[:limit]:
            line(f"  would upload {escape(bucket)}/{escape(p.job.key)} ({size(p.job.size)}, {p.reason})",
                 soft_wrap=True)
        if len(planned) > limit:
            line(f"  … and {len(planned) - limit} more (--json lists them all)")
    failures = report.failures
    for bucket, f in failures[:limit]:
        line(f"  [red]failed[/] {escape(bucket)}/{escape(f.key)}: {escape(f.error)}", soft_wrap=True)
    if len(failures) > limit:
        line(f"  … and {len(failures) - limit} more failures (--json lists them all)")
    if report.dry_run:
        line(f"dry run: {total('to_upload')} files ({size(total('to_upload_bytes'))}) would be uploaded, "
             f"{total('skipped')} skipped ({size(total('skipped_bytes'))}) as already there; nothing was uploaded")
    else:
        rate = f", {size(report.bytes_per_second)}/s" if total("uploaded_bytes") else ""
        line(f"{total('uploaded')} files ({size(total('uploaded_bytes'))}) uploaded, "
             f"{total('skipped')} skipped, {len(failures)} failed in {report.seconds:.1f} s{rate}")
