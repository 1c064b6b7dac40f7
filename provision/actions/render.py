"""``provision render-env``: render the platform's files from the environment's grants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.actions.common import require
from provision.errors import BadInput
from provision.models import Grant
from provision.state import GrantState, RenderRecord, State, StateStore

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
        import io

        from dotenv import dotenv_values

        from provision.render.formats import read_existing
        from provision.yamlsafe import decode

        text = decode(env_path, read_existing(env_path) or b"", "fix or move the file")
        values = dict(dotenv_values(stream=io.StringIO(text)))
    if (values.get("STORAGE_PROVIDER") or "http") != "http":
        return
    data_path = Path(values.get("DATA_PATH") or "/supervisely/data")
    files, size = unmigrated(storage, data_path)
    if files:
        raise BadInput(f"{env_path} keeps Supervisely's files on local disk, and {files} file(s) ({size:,} bytes) "
                       f"under {data_path}/storage were not copied to grant {storage.name!r}: Supervisely would no "
                       "longer see them", f"run `provision migrate --env {state.env} --grant {storage.name} "
                       f"--data-path {data_path}` first (or pass --skip-migration-check)")


