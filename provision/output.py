"""Human output (rich, on stderr) and machine output (one JSON document on stdout), with secrets masked."""

from __future__ import annotations

import json
import sys
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
        say(f"state: {result.state_file} (mode 0600). " + _next_step(result.grant, result.env))


def _next_step(grant: Any, env: str) -> str:
    """The next command for this grant and what render-env will do with it in Supervisely (instance storage or a
    Links connection); for a keyless Azure/GCS grant, which neither Supervisely nor CVAT can use, what to do
    instead."""
    render = f"Next: provision render-env --env {env} --out DIR"
    if grant is None:
        return render
    from provision.roles import storage_gaps

    if grant.auth.kind == "ambient" and grant.provider != "s3":
        return ("Next: attach the identity to the machine that reads the buckets; Supervisely and CVAT cannot use a "
                "keyless grant (render-env refuses it)")
    return render + (" (it can be Supervisely's instance storage)" if not storage_gaps(grant) else
                     " (a Links connection in remote_links.yml; Supervisely's instance storage needs a --full grant)")


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


CREDENTIALS_LEFT = ("sas of ", "account key ")
"""How a provider's destroy names a credential that stays valid (`provision.providers.azure.destroy.credentials_left`),
as opposed to an adopted resource left in place."""


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
    credentials = [k for k in result.kept if k.startswith(CREDENTIALS_LEFT)]
    adopted = [k for k in result.kept if not k.startswith(CREDENTIALS_LEFT)]
    if adopted:
        say("left in place (adopted, never deleted): " + ", ".join(adopted))
    for line in credentials:
        say(f"still valid: {line}")
    for path in result.rerendered:
        say(f"re-rendered {path} (without the destroyed grant)")
    if result.rendered:
        say("the files rendered into " + ", ".join(result.rendered) + " still point at what was deleted: re-render "
            "them for another grant, or remove the storage lines")
