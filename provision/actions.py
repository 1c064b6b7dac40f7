"""What each command does, as functions a program or a test can call: apply a profile, render the platform's
files, verify, status, destroy, and the environment checks every command shares.

Each action takes a `provision.state.StateStore` (the environment), does its work, and returns a result object;
`provision.output` turns results into tables or JSON, and `provision.cli` turns flags into one action call.
Actions never print: a line meant for the user while the action runs goes to the ``notify`` callback (default:
dropped). Errors are `provision.errors.ProvisionError` subclasses, each carrying its exit code.

Providers are called through the ledger exactly as their base class documents: ``provider.apply(state, plan)``,
``provider.destroy(state, plan, delete_data)``, ``provider.verify(state)``, with
``Plan(state, lambda: store.save(state), dry_run=..., rotate=...)`` (`provision.ledger.Plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from provision.errors import BadInput, PartialFailure, VerifyFailed
from provision.ledger import Plan
from provision.lifecycle import drift, probeable, rerender, verify_until_settled
from provision.models import Change, Grant, Resource
from provision.objects import grant_of
from provision.profiles import Profile
from provision.providers.base import VerifyRow, load_provider
from provision.state import RenderRecord, State, StateStore

Notify = Callable[[str], None]
"""A callback receiving one line of human text (rich markup allowed) while an action runs."""
Need = Literal["file", "grant", "record"]


def _quiet(_text: str) -> None:
    """The default ``notify``: say nothing."""


# ---- the environment --------------------------------------------------------------------------------------------
def require(store: StateStore, state: State | None = None, *, need: Need = "file",
            doing: str = "provisioned") -> None:
    """Check that the environment holds what a command needs: the one "nothing provisioned" check.

    Args:
        store: the environment.
        state: its loaded state, for ``need`` ``grant`` or ``record`` (None: only the file is checked).
        need: ``file`` (a state file exists), ``grant`` (and it holds a credential), ``record`` (and it holds a
            credential or at least one resource).
        doing: the word of the first message, "nothing <doing> in environment ..." (``to verify`` ...).

    Raises:
        BadInput: the state file does not exist, or the loaded state lacks what ``need`` asks for.
    """
    env = store.env
    if not store.exists():
        raise BadInput(f"nothing {doing} in environment {env!r} yet ({store.path} does not exist)",
                       f"run `provision s3|azure|gcs --env {env} --prefix P` first")
    if state is None:
        return
    if need == "grant":
        grant_of(state)
    elif need == "record" and state.grant is None and not state.resources:
        raise BadInput(f"nothing provisioned in environment {env!r}", f"run `provision s3|azure|gcs --env {env} ...` "
                       "first")


def load(env: str | StateStore, need: Need = "file") -> State:
    """The state of an environment that `require` accepts (read without the lock: for read-only commands).

    Args:
        env: the environment name, or its store.
        need: as in `require`.

    Returns:
        The loaded `provision.state.State`.

    Raises:
        BadInput: invalid environment name, corrupt state file, or what `require` raises.
    """
    store = env if isinstance(env, StateStore) else StateStore(env)
    require(store)
    state = store.load()
    require(store, state, need=need)
    return state


def _mismatches(rows: Iterable[VerifyRow]) -> str:
    """The rows that do not match the grant, as "op on target: expected X, got Y; ..."."""
    return "; ".join(f"{r.operation} on {r.target}: expected {r.expected}, got {r.actual}" for r in rows if not r.ok)


# ---- apply ------------------------------------------------------------------------------------------------------
@dataclass
class ApplyResult:
    """What `apply` did (or, in a dry run, would do).

    Attributes:
        env: the environment name.
        provider: ``s3`` | ``azure`` | ``gcs``.
        dry_run: nothing was changed.
        changes: the plan's changes, in order.
        verify: the probes run on a new or changed credential (empty when none ran).
        grant: the resulting Grant (None in a dry run that would create the first one, or with no credential).
        state_file: the state file's path.
    """

    env: str
    provider: str
    dry_run: bool
    changes: list[Change]
    verify: list[VerifyRow]
    grant: Grant | None
    state_file: Path

    @property
    def changed(self) -> bool:
        """True when any change mutates (or would mutate) something."""
        return any(c.mutating for c in self.changes)


def apply(profile: Profile, store: StateStore, *, dry_run: bool = False, rotate: bool = False, verify: bool = True,
          notify: Notify = _quiet) -> ApplyResult:
    """Apply one provider's profile: plan and make the changes, verify a new or changed credential (retrying while
    the cloud's IAM settles), re-render the recorded ``render-env`` files after a new secret, then run the deferred
    revocations (an old key goes last, after its replacement works).

    Args:
        profile: the validated inputs (`provision.profiles.load_profile`); ``profile.provider`` names the provider.
        store: the environment; it is locked for the whole run.
        dry_run: plan only; no call changes anything and nothing is saved.
        rotate: issue a new secret even when the stored one works.
        verify: probe a new or changed credential (skipped for credentials that cannot be probed from here).
        notify: receives "re-rendered <path>" lines and the next step after a re-render.

    Returns:
        The `ApplyResult`.

    Raises:
        BadInput: the environment holds another provider's grant; bad input found by the provider.
        CloudRefused, PartialFailure: raised by the provider (the state records what exists).
        VerifyFailed: the new credential does more or less than its grant (deferred revocations are not run).
    """
    provider = str(profile.provider)
    prov = load_provider(profile)
    with store.lock():
        state = store.load()
        if state.provider not in (None, provider):
            raise BadInput(f"environment {store.env!r} already holds a {state.provider} grant",
                           "use another --env, or `provision destroy` it first")
        before = state.model_dump(exclude={"updated_at"})
        old_auth = state.grant.auth if state.grant else None
        plan = Plan(state, lambda: store.save(state), dry_run=dry_run, rotate=rotate)
        if not dry_run:
            state.provider = provider
            state.inputs = profile.model_dump(mode="json")
        grant = prov.apply(state, plan)
        rows: list[VerifyRow] = []
        if not dry_run:
            state.grant = grant  # the one assignment outside the ledger: the provider's answer is the grant
            if state.model_dump(exclude={"updated_at"}) != before:
                store.save(state)
            if plan.changed and verify and probeable(grant):
                rows = verify_until_settled(prov, state)
                if not all(r.ok for r in rows):
                    raise VerifyFailed("the credential does not match its grant: " + _mismatches(rows),
                                       "revocations still pending were not done; inspect with `provision verify`, "
                                       "then re-run")
            if grant is not None and grant.auth != old_auth and state.renders:
                written = rerender(state)
                for path in written:
                    notify(f"re-rendered {path}")
                if any(record.target == "supervisely" for record in state.renders) and written:
                    notify("Next: supervisely up -d (recreates http-storage, whose mounted files and environment "
                           "changed, with the new credential)")
            plan.run_deferred()
            store.save(state)
    return ApplyResult(env=store.env, provider=provider, dry_run=dry_run, changes=plan.changes, verify=rows,
                       grant=grant, state_file=store.path)


# ---- render -----------------------------------------------------------------------------------------------------
TARGETS = ("supervisely", "cvat", "onepanel")


@dataclass(frozen=True)
class RenderOptions:
    """The options of ``render-env``; each applies to some targets only (`RenderOptions.FLAGS`).

    Attributes:
        connection: supervisely: the remote_links.yml connection name (default ``provision-<env>``).
        bucket: cvat, onepanel: the grant's bucket to use (default: its first).
        display_name: cvat: the display name (default: the bucket).
        manifests: cvat: manifest keys in the bucket.
        namespace: onepanel: the Onepanel namespace (required for onepanel).
        sync_dir: onepanel: the file syncer directory (default ``workflow-data``).
        model_dir: onepanel: the trained-model folder inside it (default ``output``).
        cache: supervisely: front-end proxy cache settings, ``NAME=VALUE`` (`provision.render.proxy_cache_env`).
    """

    connection: str | None = None
    bucket: str | None = None
    display_name: str | None = None
    manifests: list[str] | None = None
    namespace: str | None = None
    sync_dir: str | None = None
    model_dir: str | None = None
    cache: list[str] | None = None

    FLAGS = {"connection": "--connection", "bucket": "--bucket", "display_name": "--display-name",
             "manifests": "--manifest", "namespace": "--namespace", "sync_dir": "--sync-dir",
             "model_dir": "--model-dir", "cache": "--cache"}
    """Option -> its command-line flag (named in error messages)."""
    APPLIES = {"supervisely": ("connection", "cache"), "cvat": ("bucket", "display_name", "manifests"),
               "onepanel": ("bucket", "namespace", "sync_dir", "model_dir")}
    """Target -> the options it takes."""


@dataclass
class RenderResult:
    """What `render` wrote (or would write).

    Attributes:
        env, target, dry_run, out: as given (``out`` absolute).
        files: the rendered files (`provision.render.RenderedFile`: path, action, backup, masked-able preview).
        grant: the Grant rendered (for masking its secrets in output).
        layout: onepanel: the `provision.render.OnepanelLayout`; None for the other targets.
        bucket: onepanel: the bucket holding the folders.
        folder_url: onepanel: ``<scheme>://<bucket>/`` of that bucket.
        folders: onepanel: the folder keys created (or that would be created).
        warning: onepanel: why trained models will not reach CVAT by themselves, or None.
    """

    env: str
    target: str
    dry_run: bool
    out: Path
    files: list[Any]
    grant: Grant
    layout: Any = None
    bucket: str | None = None
    folder_url: str | None = None
    folders: list[str] = field(default_factory=list)
    warning: str | None = None


def check_render_options(target: str, options: RenderOptions) -> tuple[dict[str, str], Any]:
    """Validate ``render-env``'s target and options before anything is read.

    Returns:
        (the proxy cache environment, the Onepanel layout or None).

    Raises:
        BadInput: unknown target; an option of another target; bad cache settings; onepanel without a namespace
            or with invalid folders.
    """
    if target not in TARGETS:
        raise BadInput(f"unknown --target {target!r}", "use --target supervisely, cvat or onepanel")
    stray = [flag for name, flag in RenderOptions.FLAGS.items()
             if getattr(options, name) and name not in RenderOptions.APPLIES[target]]
    if stray:
        raise BadInput(f"{', '.join(stray)} does not apply to --target {target}", f"drop {', '.join(stray)}")
    proxy_env: dict[str, str] = {}
    if options.cache:
        from provision.render import proxy_cache_env

        proxy_env = proxy_cache_env(options.cache)
    layout = None
    if target == "onepanel":
        from provision.render import onepanel_layout

        if not options.namespace:
            raise BadInput("--target onepanel needs --namespace", "pass your Onepanel namespace, e.g. --namespace "
                           "default")
        layout = onepanel_layout(options.namespace, options.sync_dir or "workflow-data",
                                 options.model_dir or "output")
    return proxy_env, layout


def render(store: StateStore, target: str, out: Path, options: RenderOptions | None = None,
           dry_run: bool = False) -> RenderResult:
    """Render ``target``'s files from the stored grant into ``out`` and record the run (repeated after a
    rotation); for onepanel, also make sure the bucket folders its file syncer uses exist
    (`provision.onepanel.ensure_folders`).

    Args:
        store: the environment (must hold a grant).
        target: ``supervisely`` | ``cvat`` | ``onepanel``.
        out: an existing directory.
        options: see `RenderOptions`.
        dry_run: render and compare only; write no file and create no folder.

    Returns:
        The `RenderResult`.

    Raises:
        BadInput: see `check_render_options`; nothing provisioned; ``out`` is not a directory; a value that
            cannot be written safely; an unwritable file.
        CloudRefused: a folder could not be created (onepanel).
    """
    from provision.render import render_cvat, render_onepanel, render_supervisely, write

    options = options or RenderOptions()
    proxy_env, layout = check_render_options(target, options)
    require(store)
    out = out.absolute()
    if not out.is_dir():
        raise BadInput(f"--out {out} is not an existing directory", "create it, or pass `supervisely where`")
    result: RenderResult
    with store.lock():
        state = store.load()
        grant = grant_of(state)
        result = RenderResult(env=store.env, target=target, dry_run=dry_run, out=out, files=[], grant=grant)
        if target == "cvat":
            result.files = render_cvat(grant, out, options.bucket, options.display_name, options.manifests)
        elif layout is not None:
            from provision.onepanel import ensure_layout

            result.files = render_onepanel(grant, out, layout, options.bucket)
            result.layout, result.bucket = layout, options.bucket or grant.buckets[0]
            result.folder_url, result.folders = ensure_layout(state, result.bucket, layout.prefixes, dry_run)
            if not layout.inside:
                result.warning = (
                    f"the sync directory {layout.sync_prefix} is outside namespace {layout.namespace}: CVAT stores "
                    f"trained models under {layout.model_prefix}, which the file syncer does not download, so "
                    "trained models will have to be uploaded to CVAT by hand")
        else:
            result.files = render_supervisely(grant, out, options.connection or f"provision-{store.env}", proxy_env)
        if not dry_run:
            write(result.files)
            kept: dict[str, Any] = {k: v for k, v in {
                "connection": options.connection, "bucket": options.bucket, "display_name": options.display_name,
                "manifests": options.manifests, "proxy_env": proxy_env}.items() if v}
            if target != "onepanel" and state.remember_render(RenderRecord(target=target, out=str(out),
                                                                           options=kept)):
                store.save(state)
    return result


# ---- verify, status ---------------------------------------------------------------------------------------------
@dataclass
class VerifyResult:
    """The probes of `verify`.

    Attributes:
        env: the environment name.
        grant: the Grant probed.
        rows: one `provision.providers.base.VerifyRow` per probe (operation, target, expected, actual, ok).
    """

    env: str
    grant: Grant
    rows: list[VerifyRow]

    @property
    def ok(self) -> bool:
        """True when every probe matches the grant."""
        return all(r.ok for r in self.rows)

    def check(self) -> None:
        """Raise `VerifyFailed` (exit 5) naming each mismatching probe, unless all match."""
        bad = [r for r in self.rows if not r.ok]
        if bad:
            raise VerifyFailed(f"{len(bad)} probe(s) do not match the grant: {_mismatches(bad)}",
                               "re-run the provision command to restore the policy, then verify again")


def verify(store: StateStore) -> VerifyResult:
    """Probe the stored credential: what it should do succeeds, everything else is denied.

    Returns:
        The `VerifyResult` (call ``check()`` to turn mismatches into `VerifyFailed`).

    Raises:
        BadInput: nothing provisioned, or no credential.
        CloudRefused: the admin side of a probe was refused.
    """
    require(store, doing="to verify")
    state = store.load()
    grant = grant_of(state)
    rows = load_provider(Profile.model_validate(state.inputs)).verify(state)
    return VerifyResult(env=store.env, grant=grant, rows=rows)


@dataclass
class StatusResult:
    """What `status` found.

    Attributes:
        env: the environment name.
        resources: every resource the state records.
        rows: the drift, one ``{"resource", "name", "problem", "fix"}`` per finding (`provision.lifecycle.drift`).
    """

    env: str
    resources: list[Resource]
    rows: list[dict[str, str]]

    @property
    def in_sync(self) -> bool:
        """True when the cloud matches the state file."""
        return not self.rows


def status(store: StateStore) -> StatusResult:
    """Compare the live resources with the state file (read-only calls only): missing, drifted, extra, or a
    credential expiring soon, each with the command that fixes it.

    Raises:
        BadInput: nothing provisioned.
        CloudRefused: the admin credential cannot read the resources.
    """
    state = load(store, need="record")
    rows = drift(load_provider(Profile.model_validate(state.inputs)), state)
    return StatusResult(env=store.env, resources=list(state.resources), rows=rows)


# ---- destroy ----------------------------------------------------------------------------------------------------
@dataclass
class DestroyResult:
    """What `destroy` deleted (or would delete).

    Attributes:
        env, dry_run: as given.
        changes: the deletions, newest resource first.
        kept: adopted resources left in place ("kind name").
        rendered: directories of rendered files that still point at what was deleted (empty in a dry run).
    """

    env: str
    dry_run: bool
    changes: list[Change]
    kept: list[str]
    rendered: list[str]


def destroy(store: StateStore, *, yes: bool = False, delete_data: bool = False, dry_run: bool = False,
            confirm: Callable[[str], Any] | None = None) -> DestroyResult:
    """Delete, newest first, what provision created in the environment; never what it adopted. When nothing
    recorded is left, the state file and migrate's checksum cache (`provision.migrate.cache_path`) go too.

    Args:
        store: the environment.
        yes: do not ask for confirmation.
        delete_data: also delete the objects in buckets provision created (else a non-empty bucket stays).
        dry_run: list the deletions; delete nothing.
        confirm: asks the user ``confirm(question)`` when neither ``yes`` nor ``dry_run`` (it raises to abort);
            None when there is no one to ask.

    Returns:
        The `DestroyResult`.

    Raises:
        BadInput: nothing provisioned; confirmation needed and ``confirm`` is None.
        CloudRefused, PartialFailure: raised by the provider (the state keeps what still exists).
    """
    require(store)
    if not yes and not dry_run:
        if confirm is None:
            raise BadInput("destroy needs confirmation and there is no terminal to ask", "pass --yes")
        confirm(f"Delete everything provision created in environment {store.env!r}?")
    with store.lock():
        state = store.load()
        plan = Plan(state, lambda: store.save(state), dry_run=dry_run)
        kept = load_provider(Profile.model_validate(state.inputs)).destroy(state, plan, delete_data)
        rendered = [r.out for r in state.renders]
        if not dry_run:
            plan.set_grant(None)
            state.renders = []
            if state.resources:
                store.save(state)
            else:
                from provision.migrate import cache_path

                store.path.unlink(missing_ok=True)
                cache_path(store.env).unlink(missing_ok=True)  # migrate's checksums for buckets that are gone
    return DestroyResult(env=store.env, dry_run=dry_run, changes=plan.changes, kept=list(kept),
                         rendered=rendered if not dry_run else [])


# ---- migrate ----------------------------------------------------------------------------------------------------
def migrate(store: StateStore, data_path: Path, *, dry_run: bool = False, concurrency: int | None = None,
            progress: Any = None, notify: Notify = _quiet) -> Any:
    """`provision.migrate.migrate` on the environment, under its lock.

    Args:
        store: the environment (must exist).
        data_path: Supervisely's DATA_PATH (made absolute).
        dry_run, concurrency, progress: as in `provision.migrate.migrate` (None: its default).
        notify: told how to resume when the run is interrupted.

    Returns:
        The `provision.migrate.MigrateReport`; `migrate_failed` turns its failures into an error.

    Raises:
        BadInput: nothing provisioned; what `provision.migrate.migrate` raises. KeyboardInterrupt is re-raised.
    """
    from provision.migrate import migrate as run

    require(store)
    given = {"concurrency": concurrency, "progress": progress}
    kwargs: dict[str, Any] = {"dry_run": dry_run, **{k: v for k, v in given.items() if v is not None}}
    with store.lock():
        state = store.load()
        try:  # the checksum cache is migrate's default, `migrate.cache_path(env)` (destroy removes it)
            return run(state, data_path.absolute(), **kwargs)
        except KeyboardInterrupt:
            notify("interrupted: re-run the same command to resume (what was uploaded is skipped)")
            raise


def migrate_failed(report: Any, data_path: Path) -> PartialFailure | None:
    """The `PartialFailure` (exit 4) for a migrate run whose uploads failed, naming the first; None when none did
    (or in a dry run)."""
    failures = report.failures
    if not failures or report.dry_run:
        return None
    bucket, first = failures[0]
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    return PartialFailure(f"{len(failures)} of {report.total('files')} files were not uploaded: "
                          f"{bucket}/{first.key} ({first.error}){more}",
                          f"fix the cause and re-run `provision migrate --env {report.env} --data-path "
                          f"{data_path}`; files already uploaded are skipped")
