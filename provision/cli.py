"""The command line: parse flags, build a Profile, call a provider or the renderer, print.

No cloud SDK (and nothing heavy) is imported at module level, so ``provision --help`` stays fast; each command
imports what it needs. Every `ProvisionError` is turned into a one-line message and its exit code in one place,
`_errors`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Provision cloud object storage for self-hosted Supervisely, CVAT and Onepanel, least-privilege, in one "
    "command. Start with `provision sandbox up` and `--env sandbox` to try it with no cloud account.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(help="The embedded local cloud: real S3/IAM APIs on 127.0.0.1.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(sandbox_app, name="sandbox")

ENV = typer.Option("default", "--env", help="Environment: state in .provision/<env>.json, defaults in envs/<env>.yaml.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan; make no change at all.")
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout (human text goes to stderr).")
SHOW = typer.Option(False, "--show-secrets", help="Print secrets instead of masking them.")
ROTATE = typer.Option(False, "--rotate", help="Issue a new secret, verify it, re-render, then revoke the old one.")
NO_VERIFY = typer.Option(False, "--no-verify", help="Skip probing a new or changed credential.")


def _errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn `ProvisionError` into a one-line red message and its exit code; no traceback, no locals."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from provision.errors import ProvisionError

        try:
            return func(*args, **kwargs)
        except ProvisionError as exc:
            from provision.output import error

            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


@app.command("s3")
@_errors
def s3_command(
    buckets: list[str] | None = typer.Argument(None, metavar="[BUCKET]...", help="Bucket names."),
    prefix: str | None = typer.Option(None, "--prefix", help="Supervisely's pair: P-public and P-private."),
    readonly: bool = typer.Option(False, "--readonly", help="List and read only (the default)."),
    full: bool = typer.Option(False, "--full", help="Read, write, delete and multipart on these buckets only."),
    iam_role: str | None = typer.Option(None, "--iam-role", help="A role + instance profile instead of a key."),
    user: str | None = typer.Option(None, "--user", help="IAM user name (default provision-<prefix>-<access>)."),
    region: str | None = typer.Option(None, "--region", help="Bucket region (default: the SDK's, or us-east-1)."),
    endpoint_url: str | None = typer.Option(None, "--endpoint-url", help="S3-compatible endpoint (MinIO...)."),
    rotate: bool = ROTATE,
    no_verify: bool = NO_VERIFY,
    env: str = ENV,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Buckets with secure defaults and a least-privilege IAM user + access key (or role) for exactly them."""
    from provision.errors import BadInput

    if readonly and full:
        raise BadInput("--readonly and --full are mutually exclusive", "pass one of them")
    overrides = {"buckets": buckets, "prefix": prefix, "iam_role": iam_role, "user": user, "region": region,
                 "endpoint_url": endpoint_url, "access": "full" if full else ("readonly" if readonly else None)}
    _provision("s3", env, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


def _provision(provider: str, env: str, overrides: dict[str, Any], dry_run: bool, json_out: bool,
               show_secrets: bool, rotate: bool = False, verify: bool = True) -> None:
    """Apply one provider's profile: plan/apply, verify a changed credential, re-render after a new secret,
    then run deferred revocations (the old key goes last)."""
    from provision.errors import VerifyFailed
    from provision.lifecycle import probeable, rerender, verify_until_settled
    from provision.output import changes_table, emit_json, grant_summary, grant_view, say
    from provision.profiles import load_profile
    from provision.providers.base import Plan, load_provider
    from provision.state import StateStore

    store = StateStore(env)
    profile = load_profile(env, overrides, provider)
    prov = load_provider(profile)
    with store.lock():
        state = store.load()
        if state.provider not in (None, provider):
            from provision.errors import BadInput

            raise BadInput(f"environment {env!r} already holds a {state.provider} grant",
                           "use another --env, or `provision destroy` it first")
        before = state.model_dump(exclude={"updated_at"})
        old_auth = state.grant.auth if state.grant else None
        plan = Plan(dry_run=dry_run, rotate=rotate)
        save = (lambda: None) if dry_run else (lambda: store.save(state))
        if not dry_run:
            state.provider = provider
            state.inputs = profile.model_dump(mode="json")
        grant = prov.apply(state, plan, save)
        rows: list[Any] = []
        if not dry_run:
            state.grant = grant
            if state.model_dump(exclude={"updated_at"}) != before:
                store.save(state)
            if plan.changed and verify and probeable(grant):
                rows = verify_until_settled(prov, state)
                bad = [r for r in rows if not r.ok]
                if bad:
                    raise VerifyFailed(
                        "the credential does not match its grant: " + "; ".join(
                            f"{r.operation} on {r.target}: expected {r.expected}, got {r.actual}" for r in bad),
                        "nothing old was revoked; inspect with `provision verify`, then re-run")
            if grant is not None and grant.auth != old_auth and state.renders:
                for path in rerender(state):
                    say(f"re-rendered {path}")
            plan.run_deferred()
            store.save(state)
    title = "plan (dry run: nothing was changed)" if dry_run else f"provision {provider} — env {env}"
    if json_out:
        emit_json({"env": env, "dry_run": dry_run, "changed": plan.changed,
                   "changes": [c.model_dump() for c in plan.changes],
                   "verify": [dict(r.model_dump(), ok=r.ok) for r in rows],
                   "grant": grant_view(grant, show_secrets) if grant else None,
                   "state_file": str(store.path)})
        return
    changes_table(plan.changes, title)
    if rows:
        say(f"verify: all {len(rows)} probes match the grant")
    if grant is not None:
        grant_summary(grant, show_secrets)
    if not dry_run:
        say(f"state: {store.path} (mode 0600). Next: provision render-env --env {env} --out DIR")


@app.command("render-env")
@_errors
def render_env_command(
    target: str = typer.Option("supervisely", "--target", help="supervisely (more targets to come)."),
    out: Path = typer.Option(Path("."), "--out", help="Directory to write into (Supervisely: `supervisely where`)."),
    connection: str | None = typer.Option(None, "--connection", help="remote_links.yml connection name."),
    env: str = ENV,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Render .env, docker-compose.override.yml and remote_links.yml from the stored grant, merged into DIR."""
    from provision.errors import BadInput
    from provision.output import emit_json, say
    from provision.render import mask_text, render_supervisely, secrets_of, write
    from provision.state import StateStore

    if target != "supervisely":
        raise BadInput(f"unknown --target {target!r}", "use --target supervisely")
    store = StateStore(env)
    if not store.exists():
        raise BadInput(f"nothing provisioned in environment {env!r} yet ({store.path} does not exist)",
                       f"run `provision s3 --env {env} ...` first")
    out = out.absolute()
    if not out.is_dir():
        raise BadInput(f"--out {out} is not an existing directory", "create it, or pass `supervisely where`")
    with store.lock():
        state = store.load()
        if state.grant is None:
            raise BadInput(f"environment {env!r} has no credential yet", f"run `provision s3 --env {env}` first")
        files = render_supervisely(state.grant, out, connection or f"provision-{env}")
        if not dry_run:
            write(files)
            from provision.state import RenderRecord

            options = {"connection": connection} if connection else {}
            if state.remember_render(RenderRecord(target=target, out=str(out), options=options)):
                store.save(state)
    secrets = [] if show_secrets else secrets_of(state.grant)
    if json_out:
        emit_json({"env": env, "dry_run": dry_run, "files": [
            {"path": str(f.path), "action": f.action, "backup": str(f.backup) if f.backup else None,
             "managed": mask_text(f.preview, secrets)} for f in files]})
        return
    from rich.markup import escape

    for f in files:
        verb = f"would {f.action}" if dry_run and f.action != "no change" else f.action
        say(f"[bold]{verb}[/] {f.path}" + (f" (backup: {f.backup.name})" if f.backup else "")
            + (" mode 0600" if not dry_run and f.action != "no change" else ""))
        say("[dim]" + escape(mask_text(f.preview, secrets)).rstrip() + "[/]")
    if not dry_run:
        say("Next: supervisely up -d")


@app.command("verify")
@_errors
def verify_command(env: str = ENV, json_out: bool = JSON) -> None:
    """Probe the issued credential: what it should do succeeds, everything else is denied (exit 5 otherwise)."""
    from provision.errors import BadInput, VerifyFailed
    from provision.output import console, emit_json, say
    from provision.profiles import Profile
    from provision.providers.base import load_provider
    from provision.state import StateStore

    store = StateStore(env)
    state = store.load()
    if state.grant is None:
        raise BadInput(f"nothing to verify in environment {env!r}", f"run `provision s3 --env {env}` first")
    profile = Profile.model_validate(state.inputs)
    rows = load_provider(profile).verify(state)
    bad = [r for r in rows if not r.ok]
    if json_out:
        emit_json({"env": env, "ok": not bad, "rows": [dict(r.model_dump(), ok=r.ok) for r in rows]})
    else:
        from rich.table import Table

        table = Table(title=f"verify — env {env}: {state.grant.access.value} credential", title_justify="left")
        for column in ("operation", "target", "expected", "actual", ""):
            table.add_column(column)
        for r in rows:
            table.add_row(r.operation, r.target, r.expected, r.actual, "[green]ok[/]" if r.ok else "[red]WRONG[/]")
        console().print(table)
        if not bad:
            say(f"[green]all {len(rows)} probes match the grant[/]")
    if bad:
        names = "; ".join(f"{r.operation} on {r.target}: expected {r.expected}, got {r.actual}" for r in bad)
        raise VerifyFailed(f"{len(bad)} probe(s) do not match the grant: {names}",
                           "re-run the provision command to restore the policy, then verify again")


@app.command("status")
@_errors
def status_command(env: str = ENV, json_out: bool = JSON) -> None:
    """Live resources vs the state file: missing, drifted, deleted or expiring, each with the command to fix it."""
    from provision.errors import BadInput
    from provision.lifecycle import drift
    from provision.output import console, emit_json, say
    from provision.profiles import Profile
    from provision.providers.base import load_provider
    from provision.state import StateStore

    store = StateStore(env)
    state = store.load()
    if state.grant is None and not state.resources:
        raise BadInput(f"nothing provisioned in environment {env!r}", f"run `provision s3 --env {env}` first")
    rows = drift(load_provider(Profile.model_validate(state.inputs)), state)
    if json_out:
        emit_json({"env": env, "in_sync": not rows, "rows": rows, "resources": [
            r.model_dump() for r in state.resources]})
        return
    from rich.table import Table

    table = Table(title=f"status — env {env}: {len(state.resources)} resources recorded", title_justify="left")
    for column in ("resource", "name", "created by provision"):
        table.add_column(column)
    for r in state.resources:
        table.add_row(r.kind, r.name if not r.parent else f"{r.parent}/{r.name}", "yes" if r.created else "adopted")
    console().print(table)
    if not rows:
        say("[green]in sync: the cloud matches the state file[/]")
        return
    problems = Table(title="drift", title_justify="left")
    for column in ("resource", "name", "problem", "fix"):
        problems.add_column(column)
    for row in rows:
        problems.add_row(row["resource"], row["name"], f"[yellow]{row['problem']}[/]", row["fix"])
    console().print(problems)


@app.command("destroy")
@_errors
def destroy_command(
    env: str = ENV,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation (needed without a terminal)."),
    delete_data: bool = typer.Option(False, "--delete-data", help="Also delete objects in buckets it created."),
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
) -> None:
    """Delete, newest first, what provision created (keys, policies, users, roles, empty buckets); never what it
    adopted."""
    from provision.errors import BadInput
    from provision.output import changes_table, emit_json, say
    from provision.profiles import Profile
    from provision.providers.base import Plan, load_provider
    from provision.state import StateStore

    store = StateStore(env)
    if not store.exists():
        raise BadInput(f"nothing provisioned in environment {env!r}", "check --env")
    if not yes and not dry_run:
        if not sys.stdin.isatty():
            raise BadInput("destroy needs confirmation and there is no terminal to ask", "pass --yes")
        typer.confirm(f"Delete everything provision created in environment {env!r}?", abort=True)
    with store.lock():
        state = store.load()
        plan = Plan(dry_run=dry_run)
        save = (lambda: None) if dry_run else (lambda: store.save(state))
        kept = load_provider(Profile.model_validate(state.inputs)).destroy(state, plan, save, delete_data)
        rendered = [r.out for r in state.renders]
        if not dry_run:
            state.grant = None
            state.renders = []
            if state.resources:
                store.save(state)
            else:
                store.path.unlink(missing_ok=True)
    if json_out:
        emit_json({"env": env, "dry_run": dry_run, "changes": [c.model_dump() for c in plan.changes],
                   "left_in_place": kept})
        return
    changes_table(plan.changes, "plan (dry run: nothing was deleted)" if dry_run else f"destroy — env {env}")
    if kept:
        say("left in place (adopted, never deleted): " + ", ".join(kept))
    if rendered and not dry_run:
        say("the files rendered into " + ", ".join(rendered) + " still name the deleted credential")


@sandbox_app.command("up")
@_errors
def sandbox_up(json_out: bool = JSON) -> None:
    """Start the local S3 + IAM + STS endpoint (IAM policies enforced) on 127.0.0.1."""
    from provision import sandbox
    from provision.output import emit_json, say

    info, started = sandbox.up()
    if json_out:
        emit_json({"started": started, "pid": info.pid, "s3": {"endpoint_url": info.s3.endpoint_url}})
        return
    say(f"sandbox {'started' if started else 'already running'}: S3/IAM/STS at {info.s3.endpoint_url} "
        f"(pid {info.pid}); use --env sandbox")


@sandbox_app.command("down")
@_errors
def sandbox_down() -> None:
    """Stop the sandbox (its data lives in memory and goes with it)."""
    from provision import sandbox
    from provision.output import say

    say("sandbox stopped" if sandbox.down() else "sandbox was not running")


@sandbox_app.command("status")
@_errors
def sandbox_status(json_out: bool = JSON) -> None:
    """Say whether the sandbox runs, and where."""
    from provision import sandbox
    from provision.output import emit_json, say

    info = sandbox.read_info()
    if json_out:
        emit_json({"running": info is not None, "s3": info.s3.endpoint_url if info else None})
    elif info:
        since = f"{info.started_at:%Y-%m-%d %H:%M} UTC"
        say(f"running: S3/IAM/STS at {info.s3.endpoint_url} (pid {info.pid}, since {since})")
    else:
        say("not running; start it with: provision sandbox up")
    if info is None:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()
    sys.exit(0)
