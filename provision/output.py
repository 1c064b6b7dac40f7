"""Human output (rich, on stderr) and machine output (one JSON document on stdout), with secrets masked."""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from provision.errors import counted
from provision.models import Change, Grant

_console: Any = None


def console() -> Any:
    """The rich console for human-readable output; it writes to stderr so stdout stays clean for ``--json``."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
        if not _console.is_terminal:  # a log or a pipe: never break a command or a path across lines
            _console.soft_wrap = True
            _console.width = NO_TERMINAL_WIDTH
    return _console


NO_TERMINAL_WIDTH = 10_000
"""Columns of the console when stderr is not a terminal: tables take their natural width and no line is wrapped
(a command or a path copied from a log must work)."""


def say(text: str) -> None:
    """Print one line of human text (rich markup allowed) to stderr."""
    console().print(text)


def error(text: str) -> None:
    """Print a one-line error to stderr, in red, with markup escaped."""
    from rich.markup import escape

    console().print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)


def emit_json(document: Any) -> None:
    """Print ``document`` as the one JSON document on stdout (held until the command ends when it runs inside
    `one_json_document`)."""
    if _held is not None:
        _held.documents.append(document)
        return
    _write_json(document)


def _write_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


class JsonDocument:
    """The JSON output of one command run under ``--json`` (see `one_json_document`).

    Attributes:
        active: ``--json`` was given. documents: what the command emitted. failure: the error fields, if it failed.
    """

    def __init__(self, active: bool) -> None:
        self.active = active
        self.documents: list[Any] = []
        self.failure: dict[str, Any] | None = None

    def fail(self, message: str, hint: str | None, exit_code: int) -> None:
        """Record the command's error: ``{"error": message, "hint": hint, "exit_code": exit_code}``."""
        self.failure = {"error": message, "hint": hint, "exit_code": exit_code}

    def flush(self) -> None:
        """Write the one document: the command's last one, with the failure's fields merged in when it failed
        (the failure alone when it emitted none or a non-object)."""
        last = self.documents[-1] if self.documents else None
        if self.failure is not None:
            last = dict(last, **self.failure) if isinstance(last, dict) else self.failure
        if last is not None:
            _write_json(last)


_held: JsonDocument | None = None


@contextmanager
def one_json_document(active: bool) -> Iterator[JsonDocument]:
    """Hold what `emit_json` is given while the block runs and write exactly one JSON document on stdout when it
    ends (however it ends), so an error after a report still leaves one document. Inactive (``active`` False):
    nothing is held or written.

    Yields:
        The `JsonDocument`; call ``fail`` on it for an error.
    """
    global _held
    document = JsonDocument(active)
    previous, _held = _held, (document if active else None)
    try:
        yield document
    finally:
        _held = previous
        if active:
            document.flush()


# ---- secret masking -------------------------------------------------------------------------------------------
def mask(value: str) -> str:
    """A secret as shown in output: none of its characters, only its length (``****(40 chars, masked)``)."""
    return f"****({len(value)} chars, masked)"


def secrets_of(grant: Grant) -> list[str]:
    """The secret strings of ``grant`` (secret key, SAS token, and the SAS signature on its own), to mask wherever
    they would be printed. Returns an empty list for a grant without a secret (IAM role, key file, keyless)."""
    found = [s for s in (getattr(grant.auth, "secret_key", None), getattr(grant.auth, "token", None)) if s]
    token = getattr(grant.auth, "token", None)
    if token:
        from urllib.parse import parse_qs

        found += [sig for sig in parse_qs(token).get("sig", []) if sig]
    return found


def mask_text(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (longest first) replaced by `mask` of it."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return text


def grant_view(grant: Grant, show_secrets: bool) -> dict[str, Any]:
    """The Grant as a plain dict, secrets masked unless ``show_secrets``."""
    data = grant.model_dump(mode="json")
    if not show_secrets:
        for field in ("secret_key", "token"):
            if data["auth"].get(field):
                data["auth"][field] = mask(data["auth"][field])
    return data


def changes_table(changes: list[Change], title: str) -> None:
    """Print the plan or report of a run as a table; "no changes" when nothing mutates."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("action", "resource", "name", "detail"):
        table.add_column(column)
    colours = {"create": "green", "issue": "green", "update": "yellow", "delete": "red", "adopt": "cyan"}
    for c in changes:
        colour = colours.get(c.action, "dim")
        table.add_row(f"[{colour}]{c.action}[/]", c.kind, c.name, c.detail)
    console().print(table)
    if not any(c.mutating for c in changes):
        say("[bold]no changes[/]")


def grant_summary(grant: Grant, show_secrets: bool) -> None:
    """Print the credential of a grant, masked unless ``show_secrets``."""
    auth = grant.auth
    say(f"grant: {grant.access.value} on {', '.join(grant.buckets)} via {grant.endpoint}"
        + (f":{grant.port}" if grant.port else "") + (f" ({grant.region})" if grant.region else ""))
    if auth.kind == "key_pair":
        secret = auth.secret_key if show_secrets else mask(auth.secret_key)
        say(f"  access key: {auth.access_key}\n  secret key: {secret}")
    elif auth.kind == "role":
        say(f"  IAM role + instance profile: {auth.role_name} (no keys)")
    elif auth.kind == "sas":
        from urllib.parse import parse_qs

        token = auth.token if show_secrets else mask(auth.token)
        permissions = (parse_qs(auth.token).get("sp") or ["?"])[0]
        say(f"  SAS for account {auth.account_name} (sp={permissions}), expires {auth.expires_at:%Y-%m-%d %H:%M} UTC"
            f"\n  token: {token}")
    elif auth.kind == "key_file":
        say(f"  key file: {auth.path} (mode 0600; never printed)")
    elif auth.kind == "ambient":
        say("  keyless: no secret (the platform's attached identity is granted access)")


# ---- command reports: each turns an action's result into tables (stderr) or one JSON document (stdout) ---------
def apply_report(result: Any, json_out: bool, show_secrets: bool) -> None:
    """Print what `provision.actions.apply` did: the change table, the verify summary, the grant (masked unless
    ``show_secrets``) and the next step; or, with ``json_out``, one JSON document."""
    if json_out:
        emit_json({"env": result.env, "grant_name": result.name, "dry_run": result.dry_run,
                   "changed": result.changed, "changes": [c.model_dump() for c in result.changes],
                   "verify": [dict(r.model_dump(), ok=r.ok) for r in result.verify],
                   "grant": grant_view(result.grant, show_secrets) if result.grant else None,
                   "state_file": str(result.state_file)})
        return
    title = ("plan (dry run: nothing was changed)" if result.dry_run
             else f"provision {result.provider} — env {result.env}, grant {result.name}")
    changes_table(result.changes, title)
    if result.verify:
        say(f"verify: {_all(len(result.verify), 'probe')} the grant")
    if result.grant is not None:
        grant_summary(result.grant, show_secrets)
    if result.dry_run:
        return
    if getattr(result, "rerendered", None):  # the rendered files already carry the new secret
        say(f"state: {result.state_file} (mode 0600)")
    else:
        say(f"state: {result.state_file} (mode 0600). Next: provision render-env --env {result.env} --out DIR"
            + _next_render_hint(result.grant))


def _next_render_hint(grant: Any) -> str:
    """What render-env will do with this grant in Supervisely (storage or Links connection), or why it cannot."""
    if grant is None:
        return ""
    from provision.roles import storage_gaps

    if grant.auth.kind == "ambient" and grant.provider != "s3":
        return " (a keyless grant: Supervisely cannot use it; CVAT neither)"
    return (" (it can be Supervisely's instance storage)" if not storage_gaps(grant)
            else " (a Links connection in remote_links.yml; Supervisely's instance storage needs a --full grant)")


def _all(count: int, noun: str) -> str:
    """``all 3 probes match`` / ``the 1 probe matches``: the subject and verb of a "everything matched" line."""
    return f"all {count} {noun}s match" if count != 1 else f"the 1 {noun} matches"


def render_report(result: Any, json_out: bool, show_secrets: bool) -> None:
    """Print what `provision.actions.render` wrote: each file with its action and managed content (secrets
    masked unless ``show_secrets``), Onepanel's folders and warning, and the next step; or one JSON document."""
    grants = list(result.grants.values()) or ([result.grant] if result.grant else [])
    secrets = [] if show_secrets else [s for g in grants for s in secrets_of(g)]
    secrets += [json.dumps(s)[1:-1] for s in secrets]  # as they appear inside JSON strings
    layout, dry_run = result.layout, result.dry_run
    if json_out:
        document: dict[str, Any] = {"env": result.env, "dry_run": dry_run, "storage": result.storage,
                                    "connections": result.connections, "files": [
            {"path": str(f.path), "action": f.action, "backup": str(f.backup) if f.backup else None,
             "managed": mask_text(f.preview, secrets)} for f in result.files]}
        if layout is not None:
            document.update(bucket=result.bucket, folders=layout.prefixes, created=result.folders,
                            warnings=[result.warning] if result.warning else [])
        emit_json(document)
        if result.warning:
            say(f"[yellow]warning:[/] {result.warning}")
        return
    from rich.markup import escape

    for f in result.files:
        verb = f"would {f.action}" if dry_run and f.action != "no change" else f.action
        say(f"[bold]{verb}[/] {f.path}" + (f" (backup: {f.backup.name})" if f.backup else "")
            + (" mode 0600" if not dry_run and f.action != "no change" else ""))
        say("[dim]" + escape(mask_text(f.preview, secrets)).rstrip() + "[/]")
    if layout is not None:
        for prefix in layout.prefixes:
            verb = ("would create" if dry_run else "created") if prefix in result.folders else "exists"
            say(f"[bold]{verb}[/] folder {result.folder_url}{escape(prefix)}")
        if result.warning:
            say(f"[yellow]warning:[/] {escape(result.warning)}")
    if dry_run:
        return
    if result.target == "cvat":
        say(f"Next: provision cvat attach --env {result.env} --url URL --token T (or POST "
            f"{result.files[0].path.name} to /api/cloudstorages)")
    elif result.target == "onepanel":
        say("Next: export these variables in Onepanel, then create the CVAT workspace")
    else:
        if result.storage is None:
            say("[yellow].env not changed:[/] no grant of this environment can be Supervisely's instance storage "
                "(it writes every upload there: read, write, delete and multipart on a P-public / P-private pair); "
                f"run `provision s3 --prefix P --full --env {result.env}` (or azure --account-key, gcs --full) for it")
        else:
            say(f"instance storage (.env): grant {result.storage}")
        if result.connections:
            say("Links connections (remote_links.yml): " + ", ".join(result.connections))
        changed = any(f.action != "no change" for f in result.files)
        say("Next: supervisely up -d" if changed else "nothing to change: every file is as rendered already")


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print a rich table titled ``title`` (left-justified) with ``columns`` and ``rows`` (markup allowed)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console().print(table)


def verify_report(result: Any, json_out: bool) -> None:
    """Print the probes of `provision.actions.verify`, one table per grant (or one JSON document)."""
    rows = result.rows
    if json_out:
        emit_json({"env": result.env, "ok": result.ok, "rows": [dict(r.model_dump(), ok=r.ok) for r in rows],
                   "grants": [{"name": g.name, "uses": g.uses, "access": g.grant.access.value, "skipped": g.skipped,
                               "rows": [dict(r.model_dump(), ok=r.ok) for r in g.rows]} for g in result.grants]})
        return
    for g in result.grants:
        title = (f"verify — env {result.env}, grant {g.name}: {g.grant.access.value} {g.grant.provider} credential, "
                 f"checked as {', '.join(g.uses)}")
        if g.skipped:
            say(f"{title}: skipped ({g.skipped})")
            continue
        _table(title, ("operation", "target", "expected", "actual", ""),
               [(r.operation, r.target, r.expected, r.actual, "[green]ok[/]" if r.ok else "[red]WRONG[/]")
                for r in g.rows])
    bad = [(g.name, r) for g in result.grants for r in g.rows if not r.ok]
    if bad:  # the error line names them too; the table keeps a long list readable
        _table(f"mismatches — {counted(len(bad), 'probe')}", ("grant", "operation", "target", "expected", "actual"),
               [(name, r.operation, r.target, r.expected, f"[red]{r.actual}[/]") for name, r in bad])
    if result.ok:
        say(f"[green]{_all(len(rows), 'probe')} {'its grant' if len(rows) == 1 else 'their grants'}[/]")


def status_report(result: Any, json_out: bool) -> None:
    """Print `provision.actions.status`: the recorded resources, then the drift with its fixes (or one JSON
    document)."""
    if json_out:
        emit_json({"env": result.env, "in_sync": result.in_sync, "rows": result.rows,
                   "resources": [r.model_dump() for r in result.resources]})
        return
    _table(f"status — env {result.env}: {counted(len(result.resources), 'resource')} recorded",
           ("resource", "name", "created by provision"),
           [(r.kind, r.name if not r.parent else f"{r.parent}/{r.name}", "yes" if r.created else "adopted")
            for r in result.resources])
    if result.in_sync:
        say("[green]in sync: the cloud matches the state file[/]")
        return
    _table("drift", ("grant", "resource", "name", "problem", "fix"),
           [(row.get("grant", ""), row["resource"], row["name"], f"[yellow]{row['problem']}[/]", row["fix"])
            for row in result.rows])


def destroy_report(result: Any, json_out: bool) -> None:
    """Print what `provision.actions.destroy` deleted, what it left in place, and which rendered files are now
    stale (or one JSON document)."""
    if json_out:
        emit_json({"env": result.env, "dry_run": result.dry_run, "grants": result.grants,
                   "changes": [c.model_dump() for c in result.changes], "left_in_place": result.kept,
                   "rerendered": [str(p) for p in result.rerendered]})
        return
    changes_table(result.changes, "plan (dry run: nothing was deleted)" if result.dry_run
                  else f"destroy — env {result.env}")
    if result.kept:
        say("left in place (adopted, never deleted): " + ", ".join(result.kept))
    for path in result.rerendered:
        say(f"re-rendered {path} (without the destroyed grant)")
    if result.rendered:
        say("the files rendered into " + ", ".join(result.rendered) + " still point at what was deleted: re-render "
            "them for another grant, or remove the storage lines")


def sandbox_endpoints(info: Any) -> dict[str, str | None]:
    """Service -> endpoint of a running sandbox (`provision.sandbox.SandboxInfo`; None for a service it runs
    without)."""
    return {"s3": f"{info.s3.endpoint_url} (S3, IAM, STS)",
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
