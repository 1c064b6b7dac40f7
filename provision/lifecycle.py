"""Provider-neutral lifecycle steps shared by the commands: verify with back-off, re-render after a secret
changed, drift (status), and the command that restores an environment."""

from __future__ import annotations

import shlex
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from provision.models import Grant
from provision.providers.base import PROBE_AUTHS, BaseProvider, Plan, VerifyRow
from provision.state import GrantState, State

EXPIRY_WARNING = timedelta(days=14)
"""A SAS or key expiring sooner than this is reported by ``status``."""


def probeable(grant: Grant | None) -> bool:
    """True when ``grant`` carries a credential that `verify` can use from this machine."""
    return grant is not None and grant.auth.kind in PROBE_AUTHS


def verify_until_settled(provider: BaseProvider, state: GrantState, timeout: float = 60.0) -> list[VerifyRow]:
    """Run ``provider.verify`` until every row matches or ``timeout`` seconds pass (IAM, RBAC and bucket IAM are
    eventually consistent), backing off from 1 s to 8 s. Returns the last rows."""
    delay, deadline = 1.0, time.monotonic() + timeout
    while True:
        rows = provider.verify(state)
        if all(r.ok for r in rows) or time.monotonic() + delay > deadline:
            return rows
        time.sleep(delay)
        delay = min(delay * 2, 8.0)


def rerender(state: State) -> list[Path]:
    """Repeat every recorded ``render-env`` run with the environment's current grants (after a rotation, or after
    a grant was destroyed: its Links connection and mounts go). A run for one grant (CVAT, Onepanel) whose grant is
    gone is dropped. Returns the paths written. Raises what `provision.render` raises."""
    from provision.render import render_target, write

    written: list[Path] = []
    for record in list(state.renders):
        grant = record.options.get("grant")
        if grant is not None and grant not in state.grants:
            state.renders.remove(record)
            continue
        if record.target != "supervisely" and not any(g.grant for g in state.select(grant)):
            continue
        options = dict(record.options)
        files = render_target(record.target, state, Path(record.out), options)
        write(files)
        record.options = {k: v for k, v in options.items() if v not in (None, [], {})}
        written += [f.path for f in files if f.action != "no change"]
    return written


def reapply_command(state: GrantState) -> str:
    """The ``provision <provider> ...`` command line that re-applies the stored inputs of the grant ``state``.

    A stored connection string is a secret and is never printed: the command reads it from
    ``$AZURE_STORAGE_CONNECTION_STRING`` instead.
    """
    inputs: dict[str, Any] = state.inputs
    parts = ["provision", state.provider or "s3", "--env", state.env, "--grant", state.name]
    parts += list(inputs.get("buckets") or [])
    for key, value in inputs.items():
        if key in ("buckets", "provider", "sandbox", "principal_id") or value in (None, False, [], ""):
            continue
        if key == "connection_string":
            continue
        if key == "access":
            parts.append(f"--{value}")
        elif key == "keyless" and inputs.get("principal_id"):
            parts += ["--keyless", str(inputs["principal_id"])]
        elif value is True:
            parts.append(f"--{key.replace('_', '-')}")
        else:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    command = shlex.join(parts)
    if inputs.get("connection_string"):
        command += ' --connection-string "$AZURE_STORAGE_CONNECTION_STRING"'
    return command


def drift(provider: BaseProvider, state: GrantState, now: datetime | None = None) -> list[dict[str, str]]:
    """What differs between the cloud and ``state``: the plan a re-apply would make (read-only calls only),
    plus credentials expiring within `EXPIRY_WARNING`.

    Returns:
        One row per finding: ``{"resource", "name", "problem", "wanted", "fix"}`` (``problem``: missing, drifted,
        credential missing or unusable, extra, expired / expires in ...; ``wanted``: what a re-apply makes
        it); empty when all is in sync.
    """
    copy = state.model_copy(deep=True)
    plan = Plan(copy, dry_run=True)
    provider.apply(copy, plan)
    fix = reapply_command(state)
    problems = {"create": "missing", "update": "drifted", "issue": "credential missing or unusable",
                "delete": "extra"}
    rows = [{"resource": c.kind, "name": c.name, "problem": problems[c.action], "wanted": c.detail, "fix": fix}
            for c in plan.changes if c.mutating]
    expires = getattr(state.grant.auth, "expires_at", None) if state.grant else None
    if expires is not None:
        left = expires - (now or datetime.now(timezone.utc))
        if left < EXPIRY_WARNING:
            what = "expired" if left.total_seconds() <= 0 else f"expires in {left.days} d {left.seconds // 3600} h"
            rows.append({"resource": state.grant.auth.kind, "name": expires.isoformat(), "problem": what,
                         "wanted": f"valid for more than {EXPIRY_WARNING.days} d", "fix": fix + " --rotate"})
    return rows
