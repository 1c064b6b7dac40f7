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
sandbox_app = typer.Typer(help="The embedded local cloud: real S3/IAM, Azure Blob and GCS APIs on 127.0.0.1.",
                          no_args_is_help=True,
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
    overrides = {"buckets": buckets, "prefix": prefix, "iam_role": iam_role, "user": user, "region": region,
                 "endpoint_url": endpoint_url, "access": _access(readonly, full)}
    _provision("s3", env, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


@app.command("azure")
@_errors
def azure_command(
    containers: list[str] | None = typer.Argument(None, metavar="[CONTAINER]...", help="Container names."),
    prefix: str | None = typer.Option(None, "--prefix", help="Supervisely's pair: P-public and P-private."),
    account: str | None = typer.Option(None, "--account", help="Storage account name (3–24 a-z0-9)."),
    resource_group: str | None = typer.Option(None, "--resource-group", help="Resource group (default "
                                              "provision-<account>)."),
    location: str | None = typer.Option(None, "--location", help="Azure location (default westeurope)."),
    subscription: str | None = typer.Option(None, "--subscription", help="Subscription id (default "
                                            "AZURE_SUBSCRIPTION_ID, else the only one)."),
    connection_string: str | None = typer.Option(None, "--connection-string", help="Data-plane-only mode for an "
                                                 "existing account (or AZURE_STORAGE_CONNECTION_STRING)."),
    readonly: bool = typer.Option(False, "--readonly", help="Read + list only (SAS sp=rl; the default)."),
    full: bool = typer.Option(False, "--full", help="Read, add, create, write, delete, list (SAS sp=racwdl)."),
    sas_expiry: str | None = typer.Option(None, "--sas-expiry", help="SAS lifetime: 30d, 12h or "
                                          "2027-01-31T00:00:00Z (default 30d)."),
    renew_before: str | None = typer.Option(None, "--renew-before", help="Renew the stored SAS when less than "
                                            "this remains (default 7d, at most half its lifetime)."),
    account_key: bool = typer.Option(False, "--account-key", help="Hand out the account name + key1 (full "
                                     "access; what Supervisely's Azure backend takes) instead of a SAS."),
    keyless: str | None = typer.Option(None, "--keyless", metavar="PRINCIPAL_ID", help="No secret: a role "
                                       "assignment on each container for this managed identity."),
    harden: bool = typer.Option(False, "--harden", help="Fix an adopted account's insecure settings."),
    rotate: bool = ROTATE,
    no_verify: bool = NO_VERIFY,
    env: str = ENV,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """A storage account with secure defaults, private containers, and a SAS with a known expiry (or the account
    key, or keyless RBAC) for exactly them."""
    overrides = {"buckets": containers, "prefix": prefix, "account": account, "resource_group": resource_group,
                 "location": location, "subscription": subscription, "connection_string": connection_string,
                 "sas_expiry": sas_expiry, "renew_before": renew_before, "account_key": account_key or None,
                 "keyless": True if keyless is not None else None, "principal_id": keyless,
                 "harden": harden or None, "access": _access(readonly, full)}
    _provision("azure", env, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


@app.command("gcs")
@_errors
def gcs_command(
    buckets: list[str] | None = typer.Argument(None, metavar="[BUCKET]...", help="Bucket names."),
    prefix: str | None = typer.Option(None, "--prefix", help="Supervisely's pair: P-public and P-private."),
    project: str | None = typer.Option(None, "--project", help="GCP project id."),
    location: str | None = typer.Option(None, "--location", help="Bucket location (default US)."),
    readonly: bool = typer.Option(False, "--readonly", help="objectViewer + legacyBucketReader (the default)."),
    full: bool = typer.Option(False, "--full", help="objectAdmin + legacyBucketReader on these buckets only."),
    service_account: str | None = typer.Option(None, "--service-account", help="Service-account id (default "
                                               "provision-<prefix>-<ro|rw>)."),
    hmac: bool = typer.Option(False, "--hmac", help="An HMAC key for the S3-interoperable endpoint instead of a "
                              "JSON key file."),
    keyless: bool = typer.Option(False, "--keyless", help="No secret: the VM's attached service account."),
    harden: bool = typer.Option(False, "--harden", help="Fix an adopted bucket's insecure settings."),
    rotate: bool = ROTATE,
    no_verify: bool = NO_VERIFY,
    env: str = ENV,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Buckets with uniform access and public access prevention, a service account bound to exactly them, and a
    key file (or HMAC key, or nothing with --keyless)."""
    overrides = {"buckets": buckets, "prefix": prefix, "project": project, "location": location,
                 "service_account": service_account, "hmac": hmac or None, "keyless": keyless or None,
                 "harden": harden or None, "access": _access(readonly, full)}
    _provision("gcs", env, overrides, dry_run, json_out, show_secrets, rotate, not no_verify)


def _access(readonly: bool, full: bool) -> str | None:
    """The ``access`` override of ``--readonly`` / ``--full`` (None: neither given). Raises BadInput for both."""
    if readonly and full:
        from provision.errors import BadInput

        raise BadInput("--readonly and --full are mutually exclusive", "pass one of them")
    return "full" if full else ("readonly" if readonly else None)


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
        plan = Plan(state, lambda: store.save(state), dry_run=dry_run, rotate=rotate)
        if not dry_run:
            state.provider = provider
            state.inputs = profile.model_dump(mode="json")
        grant = prov.apply(state, plan)
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
                        "revocations still pending were not done; inspect with `provision verify`, then re-run")
            if grant is not None and grant.auth != old_auth and state.renders:
                written = rerender(state)
                for path in written:
                    say(f"re-rendered {path}")
                if any(record.target == "supervisely" for record in state.renders) and written:
                    say("Next: supervisely up -d (recreates http-storage, whose mounted files and environment "
                        "changed, with the new credential)")
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


def _existing_store(env: str) -> Any:
    """The `provision.state.StateStore` of ``env``. Raises BadInput when nothing was provisioned there."""
    from provision.errors import BadInput
    from provision.state import StateStore

    store = StateStore(env)
    if not store.exists():
        raise BadInput(f"nothing provisioned in environment {env!r} yet ({store.path} does not exist)",
                       f"run `provision s3|azure|gcs --env {env} --prefix P` first")
    return store


def _grant_of(state: Any) -> Any:
    """The Grant of a loaded state. Raises BadInput when the environment holds no credential."""
    from provision.errors import BadInput

    if state.grant is None:
        raise BadInput(f"environment {state.env!r} has no credential yet",
                       f"run `provision s3|azure|gcs --env {state.env} ...` first")
    return state.grant


@app.command("render-env")
@_errors
def render_env_command(
    target: str = typer.Option("supervisely", "--target", help="supervisely, cvat or onepanel."),
    out: Path = typer.Option(Path("."), "--out", help="Directory to write into (Supervisely: `supervisely where`)."),
    connection: str | None = typer.Option(None, "--connection", help="remote_links.yml connection name."),
    bucket: str | None = typer.Option(None, "--bucket", help="cvat, onepanel: the grant's bucket to use "
                                      "(default: the first)."),
    display_name: str | None = typer.Option(None, "--display-name", help="cvat: display name (default: bucket)."),
    manifest: list[str] | None = typer.Option(None, "--manifest", metavar="KEY",
                                              help="cvat: a manifest key in the bucket (repeatable)."),
    namespace: str | None = typer.Option(None, "--namespace", help="onepanel: the Onepanel namespace (required)."),
    sync_dir: str | None = typer.Option(None, "--sync-dir", help="onepanel: file syncer directory, relative to "
                                        "the namespace, or /PATH from the bucket root (default: workflow-data)."),
    model_dir: str | None = typer.Option(None, "--model-dir", help="onepanel: trained-model folder inside the "
                                         "sync directory (default: output)."),
    cache: list[str] | None = typer.Option(None, "--cache", metavar="NAME=VALUE", help="supervisely: a front-end "
                                           "proxy cache setting (repeatable), e.g. --cache previews-size=2g --cache "
                                           "storage-expires=14d; names: previews-size, previews-expires, "
                                           "storage-size, storage-expires, image-converter-size, "
                                           "image-converter-expires (Supervisely's defaults apply to the rest)."),
    env: str = ENV,
    dry_run: bool = DRY_RUN,
    json_out: bool = JSON,
    show_secrets: bool = SHOW,
) -> None:
    """Render the platform's files from the stored grant into DIR: supervisely .env, docker-compose.override.yml
    and remote_links.yml (merged); cvat cvat-cloudstorage.json; onepanel onepanel.env (+ its bucket folders)."""
    import json

    from provision.errors import BadInput
    from provision.output import emit_json, say
    from provision.render import mask_text, render_supervisely, secrets_of, write

    if target not in ("supervisely", "cvat", "onepanel"):
        raise BadInput(f"unknown --target {target!r}", "use --target supervisely, cvat or onepanel")
    given = {"--connection": connection, "--bucket": bucket, "--display-name": display_name,
             "--manifest": manifest, "--namespace": namespace, "--sync-dir": sync_dir, "--model-dir": model_dir,
             "--cache": cache}
    allowed = {"supervisely": {"--connection", "--cache"}, "cvat": {"--bucket", "--display-name", "--manifest"},
               "onepanel": {"--bucket", "--namespace", "--sync-dir", "--model-dir"}}[target]
    stray = [flag for flag, value in given.items() if value and flag not in allowed]
    if stray:
        raise BadInput(f"{', '.join(stray)} does not apply to --target {target}", f"drop {', '.join(stray)}")
    layout = None
    proxy_env: dict[str, str] = {}
    if cache:
        from provision.render import proxy_cache_env

        proxy_env = proxy_cache_env(cache)
    if target == "onepanel":
        from provision.render import onepanel_layout

        if not namespace:
            raise BadInput("--target onepanel needs --namespace", "pass your Onepanel namespace, e.g. --namespace "
                           "default")
        layout = onepanel_layout(namespace, sync_dir or "workflow-data", model_dir or "output")
    store = _existing_store(env)
    out = out.absolute()
    if not out.is_dir():
        raise BadInput(f"--out {out} is not an existing directory", "create it, or pass `supervisely where`")
    with store.lock():
        state = store.load()
        _grant_of(state)
        folders: list[str] = []
        if target == "cvat":
            from provision.render import render_cvat

            files = render_cvat(state.grant, out, bucket, display_name, manifest)
        elif layout is not None:
            from provision.objects import open_store
            from provision.onepanel import ensure_folders
            from provision.render import render_onepanel

            files = render_onepanel(state.grant, out, layout, bucket)
            folder_store = open_store(state, bucket or state.grant.buckets[0], write=True)
            folders = ensure_folders(folder_store, layout.prefixes, dry_run=dry_run)
        else:
            files = render_supervisely(state.grant, out, connection or f"provision-{env}", proxy_env)
        if not dry_run:
            write(files)
            from provision.state import RenderRecord

            options: dict[str, Any] = {k: v for k, v in {
                "connection": connection, "bucket": bucket, "display_name": display_name,
                "manifests": manifest, "proxy_env": proxy_env}.items() if v}
            if target != "onepanel" and state.remember_render(RenderRecord(target=target, out=str(out),
                                                                           options=options)):
                store.save(state)
    secrets = [] if show_secrets else secrets_of(state.grant)
    secrets += [json.dumps(s)[1:-1] for s in secrets]  # as they appear inside JSON strings
    warning = None
    if layout is not None and not layout.inside:
        warning = (f"the sync directory {layout.sync_prefix} is outside namespace {layout.namespace}: CVAT stores "
                   f"trained models under {layout.model_prefix}, which the file syncer does not download, so "
                   "trained models will have to be uploaded to CVAT by hand")
    if json_out:
        document: dict[str, Any] = {"env": env, "dry_run": dry_run, "files": [
            {"path": str(f.path), "action": f.action, "backup": str(f.backup) if f.backup else None,
             "managed": mask_text(f.preview, secrets)} for f in files]}
        if layout is not None:
            document.update(bucket=bucket or state.grant.buckets[0], folders=layout.prefixes, created=folders,
                            warnings=[warning] if warning else [])
        emit_json(document)
        if warning:
            say(f"[yellow]warning:[/] {warning}")
        return
    from rich.markup import escape

    for f in files:
        verb = f"would {f.action}" if dry_run and f.action != "no change" else f.action
        say(f"[bold]{verb}[/] {f.path}" + (f" (backup: {f.backup.name})" if f.backup else "")
            + (" mode 0600" if not dry_run and f.action != "no change" else ""))
        say("[dim]" + escape(mask_text(f.preview, secrets)).rstrip() + "[/]")
    if layout is not None:
        for prefix in layout.prefixes:
            verb = ("would create" if dry_run else "created") if prefix in folders else "exists"
            say(f"[bold]{verb}[/] folder {folder_store.url_scheme}://{folder_store.bucket}/{escape(prefix)}")
        if warning:
            say(f"[yellow]warning:[/] {escape(warning)}")
    if dry_run:
        return
    if target == "cvat":
        say(f"Next: provision cvat attach --env {env} --url URL --token T (or POST {files[0].path.name} to "
            "/api/cloudstorages)")
    elif target == "onepanel":
        say("Next: export these variables in Onepanel, then create the CVAT workspace")
    else:
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
        raise BadInput(f"nothing to verify in environment {env!r}",
                       f"run `provision s3|azure|gcs --env {env} ...` first")
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
        raise BadInput(f"nothing provisioned in environment {env!r}",
                       f"run `provision s3|azure|gcs --env {env} ...` first")
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
        plan = Plan(state, lambda: store.save(state), dry_run=dry_run)
        kept = load_provider(Profile.model_validate(state.inputs)).destroy(state, plan, delete_data)
        rendered = [r.out for r in state.renders]
        if not dry_run:
            state.grant = None
            state.renders = []
            if state.resources:
                store.save(state)
            else:
                from provision.migrate import cache_path

                store.path.unlink(missing_ok=True)
                cache_path(env).unlink(missing_ok=True)  # migrate's checksums for buckets that are gone
    if json_out:
        emit_json({"env": env, "dry_run": dry_run, "changes": [c.model_dump() for c in plan.changes],
                   "left_in_place": kept})
        return
    changes_table(plan.changes, "plan (dry run: nothing was deleted)" if dry_run else f"destroy — env {env}")
    if kept:
        say("left in place (adopted, never deleted): " + ", ".join(kept))
    if rendered and not dry_run:
        say("the files rendered into " + ", ".join(rendered) + " still point at what was deleted: re-render "
            "them for another grant, or remove the storage lines")


@sandbox_app.command("up")
@_errors
def sandbox_up(json_out: bool = JSON) -> None:
    """Start the local clouds on 127.0.0.1: S3 + IAM + STS (IAM policies enforced), Azure Blob (Azurite, HTTPS,
    SAS enforced) and Cloud Storage (emulator; no IAM)."""
    from provision import sandbox
    from provision.output import emit_json, say

    info, started = sandbox.up()
    if json_out:
        emit_json({"started": started, "pid": info.pid, **_sandbox_endpoints(info)})
        return
    say(f"sandbox {'started' if started else 'already running'} (pid {info.pid}); use --env sandbox with "
        "`provision s3`, `provision azure` or `provision gcs`")
    for service, where in _sandbox_endpoints(info).items():
        missing = "not available (Azurite not found: run `make install` or npm install -g azurite@3.35)"
        say(f"  {service:<6} {where or missing}")


def _sandbox_endpoints(info: Any) -> dict[str, str | None]:
    """Service -> endpoint of a running sandbox (None for a service it runs without)."""
    return {"s3": f"{info.s3.endpoint_url} (S3, IAM, STS)",
            "azure": f"{info.azure.account_url()} (account {info.azure.account.name}, HTTPS, CA {info.azure.ca_file})"
            if info.azure else None,
            "gcs": f"{info.gcs.endpoint_url} (project {info.gcs.project}, no IAM)" if info.gcs else None}


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
        emit_json({"running": info is not None, **(_sandbox_endpoints(info) if info else {})})
    elif info:
        since = f"{info.started_at:%Y-%m-%d %H:%M} UTC"
        say(f"running (pid {info.pid}, since {since})")
        for service, where in _sandbox_endpoints(info).items():
            say(f"  {service:<6} {where or 'not available'}")
    else:
        say("not running; start it with: provision sandbox up")
    if info is None:
        raise typer.Exit(1)


@app.command("migrate")
@_errors
def migrate_command(
    data_path: Path = typer.Option(..., "--data-path", metavar="DIR",
                                   help="Supervisely's DATA_PATH: DIR/storage/<bucket>/ goes into each bucket."),
    concurrency: int = typer.Option(10, "--concurrency", min=1, max=64, help="Parallel requests (1-64)."),
    env: str = ENV,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be uploaded or skipped; upload nothing."),
    json_out: bool = JSON,
) -> None:
    """Copy an existing install's local storage into the grant's buckets; re-runs skip what is already there."""
    from provision.errors import PartialFailure
    from provision.migrate import RichProgress, migrate, print_report
    from provision.output import console, emit_json

    store = _existing_store(env)
    with store.lock():
        state = store.load()
        try:  # the checksum cache is migrate's default, `migrate.cache_path(env)` (destroy removes it)
            if json_out:
                report = migrate(state, data_path.absolute(), dry_run=dry_run, concurrency=concurrency)
            else:
                with RichProgress(console()) as bar:
                    report = migrate(state, data_path.absolute(), dry_run=dry_run, concurrency=concurrency,
                                     progress=bar)
        except KeyboardInterrupt:
            console().print("interrupted: re-run the same command to resume (what was uploaded is skipped)")
            raise
    if json_out:
        emit_json(report.to_json())
    else:
        print_report(report, console())
    failures = report.failures
    if failures and not dry_run:
        bucket, first = failures[0]
        more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
        raise PartialFailure(f"{len(failures)} of {report.total('files')} files were not uploaded: "
                             f"{bucket}/{first.key} ({first.error}){more}",
                             f"fix the cause and re-run `provision migrate --env {env} --data-path {data_path}`; "
                             "files already uploaded are skipped")


@app.command("links")
@_errors
def links_command(
    bucket: list[str] | None = typer.Option(None, "--bucket", metavar="B",
                                            help="Only this bucket (repeatable; default: all of the grant's)."),
    key_prefix: str = typer.Option("", "--prefix", metavar="KEYPREFIX", help="Only keys starting with KEYPREFIX."),
    ext: list[str] | None = typer.Option(None, "--ext", metavar=".jpg,.png,...",
                                         help="Only keys with these extensions (case-insensitive)."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE", help="Write to FILE instead of stdout."),
    env: str = ENV,
) -> None:
    """A Supervisely links file: one s3://, azure:// or google://bucket/key per line for the grant's objects, in key
    order, streamed."""
    from provision.links import parse_extensions, write_links, write_links_file
    from provision.output import console

    extensions = parse_extensions(ext)
    state = _existing_store(env).load()
    options: dict[str, Any] = {"buckets": bucket, "prefix": key_prefix, "extensions": extensions}
    if out is not None:
        report = write_links_file(state, out.absolute(), **options)
    else:
        try:
            report = write_links(state, sys.stdout, **options)
            sys.stdout.flush()
        except BrokenPipeError:  # `provision links | head`: the reader has gone; that is not an error
            raise typer.Exit(0) from None
    counts = ", ".join(f"{name}: {n}" for name, n in report.links.items())
    say = functools.partial(console().print, soft_wrap=True)  # one line each, however long the path
    say(f"{report.total} links ({counts})" + (f" written to {out}" if out is not None else ""))
    unlinkable = sum(report.unlinkable.values())
    if unlinkable:
        say(f"[yellow]skipped {unlinkable} key(s) holding a line break: a links file cannot list them[/]")
    if not any(r.target == "supervisely" for r in state.renders):
        say(f"hint: Supervisely reads these links through remote_links.yml; run `provision render-env --env {env} "
            "--out DIR` to write it")


cvat_app = typer.Typer(help="CVAT: attach the grant's bucket as a cloud storage (needs the cvat extra).",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(cvat_app, name="cvat")


@cvat_app.command("attach")
@_errors
def cvat_attach_command(
    url: str = typer.Option(..., "--url", help="CVAT's URL, e.g. https://cvat.example.com."),
    token: str | None = typer.Option(None, "--token", envvar="CVAT_ACCESS_TOKEN",
                                     help="A CVAT Personal Access Token (or $CVAT_ACCESS_TOKEN)."),
    username: str | None = typer.Option(None, "--username", help="A CVAT user, with --password."),
    password: str | None = typer.Option(None, "--password", envvar="CVAT_PASSWORD",
                                        help="The CVAT user's password (or $CVAT_PASSWORD)."),
    bucket: str | None = typer.Option(None, "--bucket", help="The grant's bucket to attach (default: the first)."),
    display_name: str | None = typer.Option(None, "--display-name", help="CVAT display name (default: bucket)."),
    manifest: list[str] | None = typer.Option(None, "--manifest", metavar="KEY",
                                              help="A manifest key in the bucket (repeatable), e.g. from "
                                              "`provision manifest --upload`."),
    env: str = ENV,
    json_out: bool = JSON,
) -> None:
    """Create CVAT's cloud storage for the bucket, or update the existing one in place (same id)."""
    from provision.cvat import attach
    from provision.output import emit_json, say

    state = _existing_store(env).load()
    result = attach(_grant_of(state), url, token=token, username=username, password=password, bucket=bucket,
                    display_name=display_name, manifests=manifest)
    if json_out:
        emit_json(dict(result.as_dict(), env=env))
        return
    verb = "created" if result.action == "create" else "updated"
    say(f"{verb} CVAT cloud storage [bold]{result.id}[/] ({result.display_name}) for bucket {result.resource} "
        f"at {result.url} (CVAT {result.server_version})")


@app.command("manifest")
@_errors
def manifest_command(
    bucket: str | None = typer.Option(None, "--bucket", help="The grant's bucket (default: the first)."),
    key_prefix: str = typer.Option("", "--prefix", metavar="KEYPREFIX",
                                   help="The images' folder: names are relative to it, and --upload puts "
                                   "manifest.jsonl there (default: the bucket root)."),
    upload: bool = typer.Option(False, "--upload", help="Put manifest.jsonl next to the images (with the admin "
                                "credential unless the grant is --full)."),
    checksum: bool = typer.Option(False, "--checksum", help="Add CVAT's checksum (md5 of the decoded pixels); "
                                  "reads every image completely."),
    out: Path = typer.Option(Path("manifest.jsonl"), "--out", metavar="FILE",
                             help="Where to write it (default: ./manifest.jsonl)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=64, help="Images read in parallel (1-64)."),
    env: str = ENV,
    json_out: bool = JSON,
) -> None:
    """CVAT's manifest.jsonl for the images in a bucket, from ranged reads of their headers (no full download)."""
    from provision.errors import BadInput
    from provision.files import atomic_write
    from provision.manifest import MANIFEST_NAME, build_manifest, human_bytes, upload_manifest
    from provision.objects import open_store
    from provision.output import console, emit_json, say

    state = _existing_store(env).load()
    _grant_of(state)
    bucket = bucket or state.grant.buckets[0]
    out = out.absolute()
    if out.is_dir():
        out = out / MANIFEST_NAME
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: directory {out.parent} does not exist", "create it, or pass another --out")
    source = open_store(state, bucket)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("reading image headers"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console(), transient=True, disable=not console().is_terminal) as bar:
        task = bar.add_task("headers", total=None)
        manifest = build_manifest(source, key_prefix, checksum=checksum, concurrency=concurrency,
                                  on_total=lambda n: bar.update(task, total=n),
                                  on_image=lambda _key: bar.advance(task))
    try:
        atomic_write(out, manifest.text().encode(), mode=0o644)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror}", "pass a writable --out") from None
    stats = manifest.stats
    uploaded = None
    if upload and stats.images:
        uploaded = upload_manifest(open_store(state, bucket, write=True), manifest)
    if json_out:
        emit_json({"env": env, "bucket": bucket, "prefix": manifest.prefix, "out": str(out), "uploaded": uploaded,
                   "stats": vars(stats), "problems": [vars(p) for p in manifest.problems]})
        return
    from rich.markup import escape

    share = f" ({stats.bytes_read / stats.bytes_total:.1%})" if stats.bytes_total else ""
    where = f"{source.url_scheme}://{bucket}/{escape(manifest.prefix)}"
    say(f"{stats.images} images in {where}"
        + (f", {stats.related} related images in their meta" if stats.related else "")
        + f"; {stats.skipped} non-image key(s) skipped; read {human_bytes(stats.bytes_read)} of "
        f"{human_bytes(stats.bytes_total)}{share} in {stats.requests} requests")
    for problem in manifest.problems:
        say(f"[yellow]not in the manifest:[/] {escape(problem.key)}: {escape(problem.error)}")
    if not stats.images:
        say(f"[yellow]no readable images under {where}[/]" + (": nothing uploaded" if upload else ""))
    say(f"wrote {out}")
    if uploaded:
        import shlex

        from provision.providers.base import grant_credential

        own = grant_credential(state.grant, write=True) is not None
        who = "the grant's credential" if own else "the admin credential (the grant's is not allowed to write)"
        say(f"uploaded {source.url_scheme}://{bucket}/{escape(uploaded)} with {who}")
        say(f"Next: provision cvat attach --env {env} --url URL --token T --manifest {shlex.quote(uploaded)}")


def main() -> None:
    """Console-script entry point."""
    app()
    sys.exit(0)
