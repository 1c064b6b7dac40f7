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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from provision.errors import BadInput, PartialFailure, VerifyFailed, a_or_an
from provision.ledger import Plan
from provision.lifecycle import drift, probeable, rerender, verify_until_settled
from provision.models import Change, Grant, Resource
from provision.profiles import Profile
from provision.providers.base import VerifyRow, load_provider
from provision.state import GrantState, RenderRecord, State, StateStore, check_grant_name, default_grant_name

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
    if need == "grant" and not any(g.grant is not None for g in state.grants.values()):
        raise BadInput(f"environment {env!r} has no credential yet ({store.path})",
                       f"run `provision s3|azure|gcs --env {env} ...` first")
    elif need == "record" and not any(g.grant is not None or g.resources for g in state.grants.values()):
        held = "no grant" if not state.grants else "no credential and no resource"
        raise BadInput(f"nothing provisioned in environment {env!r} ({store.path} holds {held})",
                       f"run `provision s3|azure|gcs --env {env} ...` first")


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
        name: the grant's name.
        rerendered: the recorded ``render-env`` files written again with a new secret (empty when none was).
    """

    env: str
    provider: str
    dry_run: bool
    changes: list[Change]
    verify: list[VerifyRow]
    grant: Grant | None
    state_file: Path
    name: str = ""
    rerendered: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when any change mutates (or would mutate) something."""
        return any(c.mutating for c in self.changes)


def apply(profile: Profile, store: StateStore, *, grant: str | None = None, dry_run: bool = False,
          rotate: bool = False, verify: bool = True, notify: Notify = _quiet, yes: bool = False,
          confirm: Callable[[str], Any] | None = None) -> ApplyResult:
    """Apply one provider's profile to the grant ``grant`` of the environment: plan and make the changes, verify a
    new or changed credential (retrying while the cloud's IAM settles), re-render the recorded ``render-env`` files
    after a new secret, then run the deferred revocations (an old key goes last, after its replacement works).

    Args:
        profile: the validated inputs (`provision.profiles.load_profile`); ``profile.provider`` names the provider.
        store: the environment; it is locked for the whole run.
        grant: the grant's name (``--grant``); default `provision.state.default_grant_name` (the prefix, else the
            first bucket). An existing grant of that name converges to the profile (buckets added to or removed
            from its policy are reported).
        dry_run: plan only; no call changes anything and nothing is saved.
        rotate: issue a new secret even when the stored one works.
        verify: probe a new or changed credential (skipped for credentials that cannot be probed from here).
        notify: receives "re-rendered <path>" lines and the next step after a re-render.
        yes: do not ask (``--yes``): widening a deployed credential and the first change of a new environment on a
            real cloud go ahead.
        confirm: asks the user ``confirm(question)`` (it raises to abort); None when there is no terminal. Asked
            before widening a deployed credential (read-only → full, SAS → account key; without a terminal that
            needs ``yes``) and, like ``terraform apply``, before the first change of a new environment on a real
            cloud (the plan is shown in the question).

    Returns:
        The `ApplyResult`.

    Raises:
        BadInput: the grant exists for another provider; bad input found by the provider; a widening without
            ``yes`` and without a terminal.
        CloudRefused, PartialFailure: raised by the provider (the state records what exists).
        VerifyFailed: the new credential does more or less than its grant (deferred revocations are not run).
    """
    provider = str(profile.provider)
    name = check_grant_name(grant) if grant is not None else None
    prov = load_provider(profile)  # validates the buckets first: "no bucket given" names the provider's noun
    name = name or default_grant_name(profile.prefix, profile.buckets)
    with store.lock():
        state = store.load()
        known = state.grants.get(name)
        if known is not None and known.provider not in (None, provider):
            raise BadInput(f"grant {name!r} of environment {store.env!r} is {a_or_an(known.provider)} grant "
                           f"({store.path})", f"pick another --grant NAME, or `provision destroy --env {store.env} "
                           f"--grant {name}` first")
        record = state.grant_state(name)
        if not dry_run and not yes:
            _ask_before_widening(record, profile, store.env, confirm)
            if confirm is not None and not profile.sandbox and not any(g.resources for g in state.grants.values()):
                preview = Plan(record.model_copy(deep=True), dry_run=True)
                prov.apply(preview.state, preview)
                lines = "\n  ".join(f"{c.action} {c.kind} {c.name}" for c in preview.changes if c.mutating)
                confirm(f"New environment {store.env!r} ({store.path}): make these changes?\n  {lines}\n")
        before = state.model_dump(exclude={"updated_at"})
        old_auth = record.grant.auth if record.grant else None
        old_buckets = list(record.grant.buckets) if record.grant else []
        plan = Plan(record, lambda: store.save(state), dry_run=dry_run, rotate=rotate)
        if not dry_run:
            record.provider = provider  # type: ignore[assignment]
            record.inputs = prov.resolved_inputs()
        result = prov.apply(record, plan)
        for bucket in old_buckets:
            if result is not None and bucket not in result.buckets:
                plan.note("update", "grant", name, f"{bucket} removed from the grant (the bucket stays; destroy "
                          "deletes it only if provision created it)")
        rows: list[VerifyRow] = []
        written: list[Path] = []
        if not dry_run:
            plan.set_grant(result)
            if state.model_dump(exclude={"updated_at"}) != before:
                store.save(state)
            if plan.changed and verify and probeable(result):
                rows = verify_until_settled(prov, record)
                if not all(r.ok for r in rows):
                    raise VerifyFailed("the credential does not match its grant: " + _mismatches(rows),
                                       "revocations still pending were not done; inspect with `provision verify`, "
                                       "then re-run")
            if result is not None and result.auth != old_auth and state.renders:
                written = rerender(state)
                for path in written:
                    notify(f"re-rendered {path}")
                if any(r.target == "supervisely" for r in state.renders) and written:
                    notify("Next: supervisely up -d (recreates http-storage, whose mounted files and environment "
                           "changed, with the new credential)")
            plan.run_deferred()
            store.save(state)
    return ApplyResult(env=store.env, provider=provider, dry_run=dry_run, changes=plan.changes, verify=rows,
                       grant=result, state_file=store.path, name=name, rerendered=list(written))


def _ask_before_widening(record: GrantState, profile: Profile, env: str, confirm: Callable[[str], Any] | None) -> None:
    """Ask before a deployed credential is widened: read-only → full, or an Azure SAS → the account key (what the
    platform can do with it grows). Raises BadInput without a terminal (``--yes`` needed)."""
    old = record.grant
    if old is None:
        return
    widening = []
    if old.access.value == "readonly" and profile.access.value == "full":
        widening.append("read-only → full (write, delete, multipart)")
    if old.auth.kind == "sas" and profile.account_key:
        widening.append("SAS → the account key (every container of the account, no expiry)")
    if not widening:
        return
    question = f"grant {record.name!r} of environment {env!r} is deployed; this widens it: {'; '.join(widening)}"
    if confirm is None:
        raise BadInput(question, "pass --yes to widen it, or use another --grant for the wider credential")
    confirm(question + ". Continue?")


# ---- render -----------------------------------------------------------------------------------------------------
TARGETS = ("supervisely", "cvat", "onepanel")


@dataclass(frozen=True)
class RenderOptions:
    """The options of ``render-env``; each applies to some targets only (`RenderOptions.FLAGS`).

    Attributes:
        grant: render only this grant (``--grant``; cvat and onepanel need exactly one grant: this, or the only one).
        storage: supervisely: the grant that becomes the instance storage (``--storage``; default: the only grant
            that qualifies, `provision.roles.choose_storage`).
        skip_migration_check: supervisely: switch ``.env`` away from local storage even though files under its
            ``DATA_PATH`` were not migrated.
        bucket: cvat, onepanel: the grant's bucket to use (default: its first).
        display_name: cvat: the display name (default: the bucket).
        manifests: cvat: manifest keys in the bucket.
        namespace: onepanel: the Onepanel namespace (required for onepanel).
        sync_dir: onepanel: the file syncer directory (default ``workflow-data``).
        model_dir: onepanel: the trained-model folder inside it (default ``output``).
        cache: supervisely: front-end proxy cache settings, ``NAME=VALUE`` (`provision.render.proxy_cache_env`).
    """

    grant: str | None = None
    storage: str | None = None
    skip_migration_check: bool = False
    bucket: str | None = None
    display_name: str | None = None
    manifests: list[str] | None = None
    namespace: str | None = None
    sync_dir: str | None = None
    model_dir: str | None = None
    cache: list[str] | None = None

    FLAGS = {"storage": "--storage", "skip_migration_check": "--skip-migration-check", "bucket": "--bucket",
             "display_name": "--display-name",
             "manifests": "--manifest", "namespace": "--namespace", "sync_dir": "--sync-dir",
             "model_dir": "--model-dir", "cache": "--cache"}
    """Option -> its command-line flag (named in error messages)."""
    APPLIES = {"supervisely": ("storage", "skip_migration_check", "cache"),
               "cvat": ("bucket", "display_name", "manifests"),
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
        grants: the grants rendered (name -> Grant), for masking their secrets in output.
        storage: supervisely: the instance storage's grant name, or None (``.env`` left alone).
        connections: supervisely: the Links connections ``remote_links.yml`` holds for this environment.
    """

    env: str
    target: str
    dry_run: bool
    out: Path
    files: list[Any]
    grant: Grant | None
    layout: Any = None
    bucket: str | None = None
    folder_url: str | None = None
    folders: list[str] = field(default_factory=list)
    warning: str | None = None
    grants: dict[str, Grant] = field(default_factory=dict)
    storage: str | None = None
    connections: list[str] = field(default_factory=list)


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
    """Render ``target``'s files from the environment's grants into ``out`` and record the run (repeated after a
    rotation or a destroyed grant); for onepanel, also make sure the bucket folders its file syncer uses exist
    (`provision.onepanel.ensure_folders`).

    Supervisely: the instance storage (`provision.roles.choose_storage`, chosen here and recorded: a re-render
    after a rotation or a destroy never picks another) goes into ``.env``, every other grant into
    ``remote_links.yml``; with no qualifying grant ``.env`` is not touched. Switching ``.env`` away from local
    storage is refused while its ``DATA_PATH`` holds files no ``provision migrate`` copied
    (`provision.migrate.unmigrated`), unless ``skip_migration_check``.

    Args:
        store: the environment (must hold a grant).
        target: ``supervisely`` | ``cvat`` | ``onepanel``.
        out: an existing directory.
        options: see `RenderOptions`.
        dry_run: render and compare only; write no file and create no folder.

    Returns:
        The `RenderResult`.

    Raises:
        BadInput: see `check_render_options`; nothing provisioned; unknown ``--grant``; ``out`` is not a
            directory; a grant the platform cannot use; unmigrated local files; a value that cannot be written
            safely; an unwritable file.
        CloudRefused: a folder could not be created (onepanel).
        PartialFailure: a file could not be renamed into place after others were (they are restored).
    """
    from provision.render import render_target, write

    options = options or RenderOptions()
    proxy_env, layout = check_render_options(target, options)
    require(store)
    out = out.absolute()
    if not out.is_dir():
        raise BadInput(f"--out {out} is not an existing directory", "create it, or pass `supervisely where`")
    result: RenderResult
    with store.lock():
        state = store.load()
        require(store, state, need="grant")
        chosen = state.select(options.grant)
        previous = next((r.options for r in state.renders if r.target == target and r.out == str(out)), {})
        storage = options.storage
        if target == "supervisely":  # chosen here only: a repeated render keeps the recorded choice
            from provision.roles import choose_storage

            storage = choose_storage({g.name: g.grant for g in chosen if g.grant is not None}, options.storage,
                                     store.env)
        given: dict[str, Any] = {k: v for k, v in {
            "grant": options.grant, "storage": storage, "bucket": options.bucket,
            "display_name": options.display_name, "manifests": options.manifests, "proxy_env": proxy_env,
            "namespace": layout.namespace if layout else None, "sync_dir": options.sync_dir,
            "model_dir": options.model_dir}.items() if v}
        render_options = {**{k: v for k, v in previous.items() if k in ("connections", "mounts")}, **given}
        files = render_target(target, state, out, render_options)
        grant = next((g.grant for g in chosen if g.grant is not None), None)
        if target == "supervisely":
            storage = render_options.get("storage")
            if storage is not None and not options.skip_migration_check:
                check_migrated(state, state.grants[storage], out)
            grant = state.grants[storage].grant if storage else grant
        elif options.grant is None:
            grant = state.one(None, f"render-env --target {target}").grant
        result = RenderResult(env=store.env, target=target, dry_run=dry_run, out=out, files=files,
                              grant=grant)  # type: ignore[arg-type]
        result.grants = {g.name: g.grant for g in chosen if g.grant is not None}
        result.storage = render_options.get("storage")
        result.connections = [c for c in render_options.get("connections", [])]
        if layout is not None:
            from provision.onepanel import ensure_layout

            one = state.one(options.grant, "render-env --target onepanel")
            result.layout, result.bucket = layout, options.bucket or one.grant.buckets[0]  # type: ignore[union-attr]
            result.folder_url, result.folders = ensure_layout(one, result.bucket, layout.prefixes, dry_run)
            if not layout.inside:
                result.warning = (
                    f"the sync directory {layout.sync_prefix} is outside namespace {layout.namespace}: CVAT stores "
                    f"trained models under {layout.model_prefix}, which the file syncer does not download, so "
                    "trained models will have to be uploaded to CVAT by hand")
        if not dry_run:
            write(files)
            kept = {k: v for k, v in render_options.items() if v not in (None, [], {}) and k != "namespace"}
            if target != "onepanel" and state.remember_render(RenderRecord(target=target, out=str(out),
                                                                           options=kept)):
                store.save(state)
    return result


def check_migrated(state: State, storage: GrantState, out: Path) -> None:
    """Refuse to switch Supervisely's ``.env`` in ``out`` from local storage to the grant ``storage`` while the
    local storage folders (``DATA_PATH/storage/<bucket>/``, ``DATA_PATH`` read from that ``.env``, default
    ``/supervisely/data``) hold files that no complete ``provision migrate`` of this grant copied: Supervisely would
    no longer see them (storage guide, "How we store files").

    Raises:
        BadInput: how many files and bytes would vanish, and the migrate command (or ``--skip-migration-check``).
    """
    from provision.migrate import unmigrated

    env_path = out / ".env"
    values: dict[str, str | None] = {}
    if env_path.is_file():
        from dotenv import dotenv_values

        values = dict(dotenv_values(env_path))
    if (values.get("STORAGE_PROVIDER") or "http") != "http":
        return
    data_path = Path(values.get("DATA_PATH") or "/supervisely/data")
    files, size = unmigrated(storage, data_path)
    if files:
        raise BadInput(f"{env_path} keeps Supervisely's files on local disk, and {files} file(s) ({size:,} bytes) "
                       f"under {data_path}/storage were not copied to grant {storage.name!r}: Supervisely would no "
                       "longer see them", f"run `provision migrate --env {state.env} --grant {storage.name} "
                       f"--data-path {data_path}` first (or pass --skip-migration-check)")


# ---- verify, status ---------------------------------------------------------------------------------------------
@dataclass
class GrantProbes:
    """The probes of one grant.

    Attributes:
        name: the grant's name.
        grant: the Grant probed.
        uses: what the platforms do with it, as checked (``instance storage``, ``links connection``, ``cvat``).
        rows: one `provision.providers.base.VerifyRow` per probe; empty when ``skipped``.
        skipped: why it was not probed (a role or keyless grant lives on the platform's machine), or None.
    """

    name: str
    grant: Grant
    uses: list[str]
    rows: list[VerifyRow]
    skipped: str | None = None


@dataclass
class VerifyResult:
    """The probes of `verify`, per grant.

    Attributes:
        env: the environment name.
        grants: one `GrantProbes` per grant checked, in the environment's order.
    """

    env: str
    grants: list[GrantProbes]

    @property
    def rows(self) -> list[VerifyRow]:
        """Every probe of every grant."""
        return [r for g in self.grants for r in g.rows]

    @property
    def ok(self) -> bool:
        """True when every probe matches its grant."""
        return all(r.ok for r in self.rows)

    def check(self) -> None:
        """Raise `VerifyFailed` (exit 5) naming each mismatching probe, unless all match."""
        bad = [(g.name, r) for g in self.grants for r in g.rows if not r.ok]
        if bad:
            raise VerifyFailed(f"{len(bad)} probe(s) do not match their grant: " + "; ".join(
                f"{name}: {r.operation} on {r.target}: expected {r.expected}, got {r.actual}" for name, r in bad),
                "re-run the provision command of that grant to restore its policy, then verify again")


def uses_of(state: State, name: str) -> list[str]:
    """What the platforms do with grant ``name``, from the recorded renders: ``instance storage`` or ``links
    connection`` (Supervisely), ``cvat`` (``render-env --target cvat``); ``links connection`` when never rendered."""
    uses: list[str] = []
    for record in state.renders:
        if record.target == "supervisely":
            uses.append("instance storage" if record.options.get("storage") == name else "links connection")
        elif record.target == "cvat" and record.options.get("grant", name) == name:
            uses.append("cvat")
    return sorted(set(uses)) or ["links connection"]


def verify(store: StateStore, grant: str | None = None) -> VerifyResult:
    """Probe each stored credential: what it should do succeeds, everything else is denied. Grants whose
    credential cannot be used from here (an IAM role, keyless) are listed as skipped.

    Args:
        store: the environment.
        grant: only this grant (``--grant``).

    Returns:
        The `VerifyResult` (call ``check()`` to turn mismatches into `VerifyFailed`).

    Raises:
        BadInput: nothing provisioned, no credential, unknown grant.
        CloudRefused: the admin side of a probe was refused.
    """
    require(store, doing="to verify")
    state = store.load()
    require(store, state, need="grant")
    found: list[GrantProbes] = []
    for record in state.select(grant):
        if record.grant is None:
            continue
        probes = GrantProbes(name=record.name, grant=record.grant, uses=uses_of(state, record.name), rows=[])
        if not probeable(record.grant):
            probes.skipped = f"{record.grant.auth.kind}: used on the platform's machine, not from here"
        else:
            probes.rows = load_provider(Profile.model_validate(record.inputs)).verify(record)
        found.append(probes)
    return VerifyResult(env=store.env, grants=found)


@dataclass
class StatusResult:
    """What `status` found.

    Attributes:
        env: the environment name.
        resources: every resource the state records (of the grants checked).
        rows: the drift, one ``{"grant", "resource", "name", "problem", "fix"}`` per finding
            (`provision.lifecycle.drift`).
    """

    env: str
    resources: list[Resource]
    rows: list[dict[str, str]]

    @property
    def in_sync(self) -> bool:
        """True when the cloud matches the state file."""
        return not self.rows


def status(store: StateStore, grant: str | None = None) -> StatusResult:
    """Compare the live resources with the state file (read-only calls only), per grant: missing, drifted, extra,
    or a credential expiring soon, each with the command that fixes it.

    Raises:
        BadInput: nothing provisioned; unknown grant.
        CloudRefused: the admin credential cannot read the resources.
    """
    state = load(store, need="record")
    rows: list[dict[str, str]] = []
    resources: list[Resource] = []
    for record in state.select(grant):
        resources += record.resources
        if record.provider is None:
            continue
        rows += [{"grant": record.name, **row}
                 for row in drift(load_provider(Profile.model_validate(record.inputs)), record)]
    return StatusResult(env=store.env, resources=resources, rows=rows)


# ---- destroy ----------------------------------------------------------------------------------------------------
@dataclass
class DestroyResult:
    """What `destroy` deleted (or would delete).

    Attributes:
        env, dry_run: as given.
        changes: the deletions, newest resource first.
        kept: adopted resources left in place ("kind name").
        rendered: directories of rendered files that still point at what was deleted: every recorded render when
            no grant is left, else the Supervisely installs whose instance storage (``.env``) was destroyed (their
            ``.env`` is left as it is; empty in a dry run).
        grants: the grants destroyed.
        rerendered: files re-rendered without the destroyed grants (their Links connections and mounts removed).
    """

    env: str
    dry_run: bool
    changes: list[Change]
    kept: list[str]
    rendered: list[str]
    grants: list[str] = field(default_factory=list)
    rerendered: list[Path] = field(default_factory=list)


def destroy_plan(state: State, grant: str | None) -> list[str]:
    """What ``destroy`` would delete, one line per grant: ``<grant>: <kind> <name>, ...`` (created resources,
    newest first), for the confirmation prompt. Raises BadInput for an unknown grant."""
    lines = []
    for record in state.select(grant):
        ours = [f"{r.kind} {r.name}" for r in reversed(record.resources) if r.created]
        lines.append(f"{record.name}: {', '.join(ours) or 'nothing created by provision'}")
    return lines


def destroy(store: StateStore, *, grant: str | None = None, yes: bool = False, delete_data: bool = False,
            dry_run: bool = False, confirm: Callable[[str], Any] | None = None) -> DestroyResult:
    """Delete, newest first, what provision created for the environment's grants (or only ``grant``); never what
    it adopted. A bucket another grant of the environment still uses is handed over to that grant instead of being
    deleted. Recorded Supervisely renders are repeated without the destroyed grants (their Links connections and
    key mounts go). When no grant is left, the state file and migrate's checksum cache
    (`provision.migrate.cache_path`) go too.

    Args:
        store: the environment.
        grant: only this grant (``--grant``).
        yes: do not ask for confirmation.
        delete_data: also delete the objects in buckets provision created (else a non-empty bucket stays).
        dry_run: list the deletions; delete nothing.
        confirm: asks the user ``confirm(question)`` when neither ``yes`` nor ``dry_run`` (it raises to abort);
            None when there is no one to ask.

    Returns:
        The `DestroyResult`.

    Raises:
        BadInput: nothing provisioned; unknown grant; confirmation needed and ``confirm`` is None.
        CloudRefused, PartialFailure: raised by the provider (the state keeps what still exists).
    """
    require(store)
    if not yes and not dry_run:
        if confirm is None:
            raise BadInput("destroy needs confirmation and there is no terminal to ask", "pass --yes")
        listing = "\n  ".join(destroy_plan(store.load(), grant))
        confirm(f"Delete what provision created in environment {store.env!r}?\n  {listing}\n")
    changes: list[Change] = []
    kept: list[str] = []
    done: list[str] = []
    rerendered: list[Path] = []
    with store.lock():
        state = store.load()
        for record in reversed(state.select(grant)):
            _hand_over_shared(state, record, dry_run)
            plan = Plan(record, lambda: store.save(state), dry_run=dry_run)
            if record.provider is not None:
                kept += load_provider(Profile.model_validate(record.inputs)).destroy(record, plan, delete_data)
            changes += plan.changes
            done.append(record.name)
            if not dry_run:
                plan.set_grant(None)
                if not record.resources:
                    del state.grants[record.name]
                store.save(state)
        rendered = [r.out for r in state.renders]
        if state.grants:  # the install's .env still holds the destroyed instance storage's credential
            rendered = [r.out for r in state.renders if r.target == "supervisely" and r.options.get("storage") in done]
        if not dry_run:
            if state.grants:
                rerendered = rerender(state)
                store.save(state)
            else:
                from provision.migrate import cache_path

                store.path.unlink(missing_ok=True)
                cache_path(store.env).unlink(missing_ok=True)  # migrate's checksums for buckets that are gone
    return DestroyResult(env=store.env, dry_run=dry_run, changes=changes, kept=kept,
                         rendered=rendered if not dry_run else [], grants=done,
                         rerendered=rerendered)


def _hand_over_shared(state: State, record: GrantState, dry_run: bool) -> None:
    """Before ``record`` is destroyed: a bucket it created that another grant of the environment also records is
    handed over to that grant (recorded there as created) instead of being deleted under it."""
    for resource in [r for r in record.resources if r.created and r.kind in ("bucket", "container")]:
        heirs = [g for g in state.grants.values() if g is not record and g.find(resource.kind, resource.name)]
        if heirs and not dry_run:
            heirs[0].record(resource.model_copy(update={"created": True}))
            record.forget(resource.kind, resource.name)
        elif heirs:
            record.resources = [r for r in record.resources if r is not resource]


# ---- migrate ----------------------------------------------------------------------------------------------------
def migrate(store: StateStore, data_path: Path, *, grant: str | None = None, dry_run: bool = False,
            concurrency: int | None = None, progress: Any = None, notify: Notify = _quiet) -> Any:
    """`provision.migrate.migrate` on the environment, under its lock.

    Args:
        store: the environment (must exist).
        data_path: Supervisely's DATA_PATH (made absolute).
        grant: the grant whose buckets receive the files (``--grant``; default: the only grant, else the one
            `render-env` chose as instance storage).
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
        record = data_grant(state, grant, "migrate")
        started = datetime.now(timezone.utc)
        try:  # the checksum cache is migrate's default, `migrate.cache_path(env)` (destroy removes it)
            report = run(record, data_path.absolute(), **kwargs)
            if not dry_run and not report.failures:
                record.migrated[str(data_path.absolute())] = started
                store.save(state)
            return report
        except KeyboardInterrupt:
            notify("interrupted: re-run the same command to resume (what was uploaded is skipped)")
            raise


def data_grant(state: State, grant: str | None, why: str) -> GrantState:
    """The grant a data command (migrate, links, manifest, cvat attach) works on: ``grant``; else the only grant
    with a credential; else the instance storage of the last Supervisely render.

    Raises:
        BadInput: unknown ``grant``; no credential; several grants left to choose from (names them).
    """
    if grant is None:
        storages = {r.options.get("storage") for r in state.renders if r.target == "supervisely"} - {None}
        candidates = [g for g in state.grants.values() if g.grant is not None]
        if len(candidates) > 1 and len(storages) == 1:
            grant = storages.pop()
    return state.one(grant, why)


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
