"""Human output (rich, on stderr) and machine output (one JSON document on stdout), with secrets masked."""

from __future__ import annotations

import json
import sys
from typing import Any

from provision.models import Change, Grant

_console: Any = None


def console() -> Any:
    """The rich console for human-readable output; it writes to stderr so stdout stays clean for ``--json``."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
        if not _console.is_terminal:
            _console.width = 120
    return _console


def say(text: str) -> None:
    """Print one line of human text (rich markup allowed) to stderr."""
    console().print(text)


def error(text: str) -> None:
    """Print a one-line error to stderr, in red, with markup escaped."""
    from rich.markup import escape

    console().print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)


def emit_json(document: Any) -> None:
    """Print ``document`` as the one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


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
