"""The Supervisely target: ``.env`` (storage keys), ``remote_links.yml`` (one connection) and
``docker-compose.override.yml`` (the ``http-storage`` mounts, the front-end cache settings), merged into the files
already there.

Readers: ``.env`` and ``docker-compose.override.yml`` are read by Docker Compose (``supervisely up -d``), whose
dotenv dialect differs from python-dotenv; ``remote_links.yml`` by Supervisely's http-storage (a YAML reader).
Storage settings: https://docs.supervisely.com/enterprise-edition/advanced-tuning/s3 .
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.models import Grant
from provision.render import yamlfile
from provision.render.envfile import check_env, merge_env
from provision.render.formats import RenderedFile, decide, environment, read_existing, read_text_exact
from provision.render.grants import holds_secret
from provision.roles import KEY_FILE_TARGET, key_target, keyless_refusal, links_connection, links_endpoint

ENV_KEYS = (
    "STORAGE_PROVIDER",
    "STORAGE_ENDPOINT",
    "STORAGE_PORT",
    "STORAGE_ACCESS_KEY",
    "STORAGE_SECRET_KEY",
    "STORAGE_IAM_ROLE",
    "STORAGE_CREDENTIALS_PATH",
    "JUPYTER_DOWNLOAD_FILES_BEFORE_START",
    "STORAGE_JUPYTER_SYNC",
)
"""The storage keys of Supervisely's ``.env`` that `provision` manages; every other line is left alone."""

REMOTE_LINKS_TARGET = "/remote_links.yml"
HTTP_STORAGE = "http-storage"
PROXY_CACHE_DEFAULTS = {
    "CACHE_PREVIEWS_SIZE": "1g", "CACHE_PREVIEWS_EXPIRES": "12h",
    "CACHE_STORAGE_SIZE": "10g", "CACHE_STORAGE_EXPIRES": "7d",
    "CACHE_IMAGE_CONVERTER_SIZE": "10g", "CACHE_IMAGE_CONVERTER_EXPIRES": "7d",
}
"""Supervisely's front-end (``proxy`` service) cache settings and their defaults."""
_CACHE_SIZE = re.compile(r"^[1-9][0-9]{0,5}[kmg]$")
_CACHE_TIME = re.compile(r"^[1-9][0-9]{0,5}(ms|s|m|h|d|w|M|y)$")


def env_expected(grant: Grant, key_file_target: str | None) -> dict[str, str]:
    """The storage keys and values the ``.env`` must end up with for ``grant`` (what the template must produce)."""
    values = {"STORAGE_PROVIDER": grant.storage_provider, "STORAGE_ENDPOINT": grant.endpoint}
    if grant.port:
        values["STORAGE_PORT"] = str(grant.port)
    auth = grant.auth
    if auth.kind == "key_pair":
        values.update(STORAGE_ACCESS_KEY=auth.access_key, STORAGE_SECRET_KEY=auth.secret_key)
    elif auth.kind == "role":
        values["STORAGE_IAM_ROLE"] = auth.role_name
    if key_file_target:
        values["STORAGE_CREDENTIALS_PATH"] = key_file_target
    values.update(JUPYTER_DOWNLOAD_FILES_BEFORE_START="true", STORAGE_JUPYTER_SYNC="true")
    return values


def proxy_cache_env(settings: list[str]) -> dict[str, str]:
    """Turn ``--cache NAME=VALUE`` options into ``services.proxy.environment`` entries.

    Names are the variables of `PROXY_CACHE_DEFAULTS` without ``CACHE_``, lowercase, ``-`` for ``_``
    (``previews-size``). Sizes are nginx sizes (``512m``, ``10g``); expiry times nginx times (``12h``, ``7d``) —
    the proxy is nginx, whose ``proxy_cache_path max_size`` / ``inactive`` take them
    (https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_cache_path).

    Returns:
        Variable -> value, only for the settings given (Supervisely's defaults apply to the rest).

    Raises:
        BadInput: unknown name, malformed pair, or a value nginx would not accept.
    """
    names = {key[len("CACHE_"):].lower().replace("_", "-"): key for key in PROXY_CACHE_DEFAULTS}
    out: dict[str, str] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        key = names.get(name.strip().lower())
        if not sep or key is None:
            raise BadInput(f"invalid --cache {item!r}: expected NAME=VALUE with NAME one of {', '.join(names)}",
                           "e.g. --cache storage-size=50g")
        value = value.strip()
        pattern, example = (_CACHE_SIZE, "10g") if key.endswith("_SIZE") else (_CACHE_TIME, "7d")
        if not pattern.match(value):
            raise BadInput(f"invalid --cache {item!r}: {name} takes a value like {example} "
                           f"(default {PROXY_CACHE_DEFAULTS[key]})", f"e.g. --cache {name}={example}")
        out[key] = value
    return out


def _yaml_text(path: Path) -> str | None:
    """The text of an existing YAML file, or None. Raises BadInput when it is not UTF-8 (see also `read_existing`)."""
    data = read_existing(path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} is not UTF-8 text (byte {exc.start})", "fix or move the file") from None


def _volume_target(entry: Any) -> str | None:
    """The container path of a Compose volume entry, long (``target:``) or short (``src:dst[:mode]``) syntax."""
    if isinstance(entry, dict):
        target = entry.get("target")
        return None if target is None else str(target)
    parts = str(getattr(entry, "value", entry)).split(":")
    return parts[1] if len(parts) > 1 else None


def _tagged(items: Any, tag: str) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.tag import Tag

    node = CommentedMap(items) if isinstance(items, dict) else CommentedSeq(items)
    node.yaml_set_ctag(Tag(suffix=tag))
    return node


def _is_reset(value: Any) -> bool:
    return getattr(getattr(value, "tag", None), "value", None) == "!reset"


def merge_override(path: Path, data: Any, fragment: dict[str, Any], drop: tuple[str, ...] = ()) -> Any:
    """Merge our ``services.<svc>.volumes`` and ``services.<svc>.environment`` entries (``fragment``) into the
    round-trip data of an existing Compose override (None: no file), in place.

    A volume of ours replaces existing volumes with the same container target (ours come last, after the volumes
    kept); an entry already as wanted is left untouched. ``environment`` entries are set key by key, in the map or
    list form the file uses. A list tagged ``!reset`` (Compose: drop the base file's value) becomes ``!override``
    holding ours. Volumes whose container target is in ``drop`` (mounts provision wrote earlier and no longer
    wants) are removed. Every other service, key, comment, anchor and tag is kept.
    (Compose merge rules: https://docs.docker.com/reference/compose-file/merge/ .)

    Returns:
        The data.

    Raises:
        BadInput: ``services``, a service, its ``volumes`` or ``environment`` has the wrong type, or comes from a
            ``<<`` merge key; names the file and the key.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if data is None:
        data = CommentedMap()
    services = yamlfile.own_mapping(data, "services", path, "services")
    for name, ours in (fragment.get("services") or {}).items():
        service = yamlfile.own_mapping(services, name, path, f"services.{name}")
        own = dict(service.non_merged_items())
        if "volumes" in ours:
            targets = {_volume_target(v) for v in ours["volumes"]} | set(drop if name == HTTP_STORAGE else ())
            volumes = own.get("volumes")
            if _is_reset(volumes):
                service["volumes"] = _tagged(ours["volumes"], "!override")
            elif volumes is None:
                inherited = list(service.get("volumes") or [])  # from a `<<` merge key, or none
                service["volumes"] = [v for v in inherited if _volume_target(v) not in targets] + ours["volumes"]
            elif not isinstance(volumes, list):
                raise BadInput(f"{path}: services.{name}.volumes is {yamlfile.kind_of(volumes)}, not a list",
                               "fix or move the file")
            else:
                kept = [v for v in volumes if _volume_target(v) not in targets]
                if yamlfile.plain(list(volumes)) != yamlfile.plain(kept + ours["volumes"]):
                    if getattr(getattr(volumes, "anchor", None), "value", None):  # shared: edit a copy
                        volumes = CommentedSeq(volumes)
                        service["volumes"] = volumes
                    for i in reversed(range(len(volumes))):
                        if _volume_target(volumes[i]) in targets:
                            del volumes[i]
                    volumes.extend(ours["volumes"])
        if "environment" in ours:
            _merge_environment(path, service, own.get("environment"), ours["environment"], name)
    return data


def _merge_environment(path: Path, service: Any, env: Any, ours: dict[str, str], name: str) -> None:
    if _is_reset(env):
        service["environment"] = _tagged(ours, "!override")
    elif env is None:
        service["environment"] = dict(ours)
    elif isinstance(env, dict):
        for key, value in ours.items():
            if env.get(key) != value:
                env[key] = value
    elif isinstance(env, list):
        for key, value in ours.items():
            line = f"{key}={value}"
            at = [i for i, item in enumerate(env) if str(item).split("=", 1)[0] == key]
            if not at:
                env.append(line)
            elif env[at[0]] != line:
                env[at[0]] = line
    else:
        raise BadInput(f"{path}: services.{name}.environment is {yamlfile.kind_of(env)}, not a mapping or list",
                       "fix or move the file")


def merge_links(path: Path, data: Any, connection: str, want: dict[str, Any]) -> Any:
    """Set the ``connection`` entry of ``remote_links.yml``'s round-trip data (None: no file) to ``want``, in
    place: values already as wanted are left untouched (quoting, comments), others are set, keys no longer
    wanted removed, new keys appended; every other connection is kept.

    Returns:
        The data.

    Raises:
        BadInput: the entry exists and is not a mapping.
    """
    from ruamel.yaml.comments import CommentedMap

    if data is None:
        data = CommentedMap()
    entry = data.get(connection)
    if not isinstance(entry, dict):
        if entry is not None:
            raise BadInput(f"{path}: {connection} is {yamlfile.kind_of(entry)}, not a mapping", "fix or move the file")
        data[connection] = dict(want)
        return data
    for key in [k for k in entry if k not in want]:
        del entry[key]
    for key, value in want.items():
        if key not in entry or yamlfile.plain(entry[key]) != value:
            entry[key] = value
    return data


@dataclass
class SuperviselyPlan:
    """What the Supervisely files get from an environment's grants (see `plan_supervisely`).

    Attributes:
        storage: the instance-storage grant's name (``.env`` ``STORAGE_*``), or None: ``.env`` is not touched.
        connections: Links connection name -> its ``remote_links.yml`` entry (one per other grant).
        mounts: container path -> host path, mounted read-only into ``http-storage``.
        remove_connections: connections provision wrote earlier whose grant is gone or became the storage.
        remove_mounts: mount targets provision wrote earlier that are no longer wanted.
    """

    storage: str | None
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    remove_connections: list[str] = field(default_factory=list)
    remove_mounts: list[str] = field(default_factory=list)


def plan_supervisely(grants: dict[str, Grant], storage: str | None, out: Path, env: str,
                     previous: dict[str, Any] | None = None, others: tuple[str, ...] = ()) -> SuperviselyPlan:
    """Decide, from what each grant can do, where it goes in Supervisely's files.

    Args:
        grants: name -> Grant, the grants to render (each holding a credential).
        storage: the instance storage's name (`provision.roles.choose_storage`), or None.
        out: the output directory (``remote_links.yml`` is mounted from there).
        env: the environment (for hints).
        previous: the options recorded by the last render into ``out`` (``connections``, ``mounts``: what
            provision wrote then), so entries of destroyed grants are removed.
        others: grants of the environment not rendered this time (``--grant`` narrowed it): their entries stay.

    Raises:
        BadInput: a keyless Azure/GCS grant (Supervisely takes IAM roles for AWS S3 only).
    """
    previous = previous or {}
    plan = SuperviselyPlan(storage=storage)
    for name, grant in grants.items():
        refusal = keyless_refusal(name, grant, env)
        if refusal is not None:
            raise refusal
        if grant.auth.kind == "key_file":
            plan.mounts[key_target(name, storage=name == storage)] = str(Path(grant.auth.path).absolute())
        if name != storage:
            plan.connections[name] = links_connection(name, grant, env)
    keep = set(plan.connections) | set(others)
    plan.remove_connections = [c for c in previous.get("connections", []) if c not in keep]
    if plan.connections or set(previous.get("connections", [])) & set(others):
        plan.mounts[REMOTE_LINKS_TARGET] = str(out / "remote_links.yml")
    kept_mounts = set(plan.mounts) | {key_target(o, storage=False) for o in others} | \
        ({KEY_FILE_TARGET} if storage is None and others else set())
    plan.remove_mounts = [m for m in previous.get("mounts", []) if m not in kept_mounts]
    return plan


def render_supervisely(grants: dict[str, Grant], out: Path, *, storage: str | None = None, env: str = "default",
                       proxy_env: dict[str, str] | None = None, previous: dict[str, Any] | None = None,
                       others: tuple[str, ...] = ()) -> tuple[list[RenderedFile], SuperviselyPlan]:
    """Render Supervisely's ``.env``, ``remote_links.yml`` and ``docker-compose.override.yml`` into ``out`` from
    an environment's grants: the instance storage's credential into ``.env`` ``STORAGE_*`` (nothing there, not even
    a backup, when ``storage`` is None), every other grant as a Links connection named after it, and the mounts
    (``remote_links.yml``; the storage's GCS key at `KEY_FILE_TARGET`; each Links GCS key at ``/gcs-<grant>.json``),
    read-only, into ``http-storage``. Nothing is written here; see `provision.render.write`.

    Args:
        grants, storage, env, previous, others: as in `plan_supervisely`.
        out: the directory printed by ``supervisely where`` (must exist).
        proxy_env: ``services.proxy.environment`` entries (front-end cache settings), if any.

    Returns:
        (the files that change or would change, the `SuperviselyPlan`).

    Raises:
        BadInput: see `plan_supervisely`; a value cannot be written so that its reader reads it back exactly; an
            existing file is not a regular file, larger than 1 MiB, or (YAML) not UTF-8, malformed, of the wrong
            shape, or an alias bomb.
    """
    plan = plan_supervisely(grants, storage, out, env, previous, others)
    jinja = environment(links_endpoint=links_endpoint)
    files: list[RenderedFile] = []
    secret = any(holds_secret(g) for g in grants.values())

    # .env: the instance storage only
    if storage is not None:
        grant = grants[storage]
        key_file_target = KEY_FILE_TARGET if grant.auth.kind == "key_file" else None
        block = jinja.get_template("supervisely/.env.j2").render(grant=grant, auth=grant.auth,
                                                                 key_file_target=key_file_target)
        env_path = out / ".env"
        existing = read_text_exact(env_path)
        env_text = merge_env(existing, block, ENV_KEYS) if existing else block
        check_env(env_text, env_expected(grant, key_file_target), ENV_KEYS)
        files.append(decide(env_path, env_text, block, existing, holds_secret(grant)))

    # remote_links.yml: one connection per other grant; those of destroyed grants removed
    remote_links = out / "remote_links.yml"
    old_links = _yaml_text(remote_links)
    if plan.connections or (old_links is not None and plan.remove_connections):
        def edit(data: Any) -> Any:
            for name in plan.remove_connections:
                if data is not None and name in data:
                    del data[name]
            for name, want in plan.connections.items():
                data = merge_links(remote_links, data, name, want)
            return data

        links = yamlfile.edit(remote_links, old_links, edit)
        preview = yamlfile.edit(remote_links, None, edit)
        files.append(decide(remote_links, links, preview, old_links, secret))

    # docker-compose.override.yml: the mounts (and the proxy cache settings)
    override_path = out / "docker-compose.override.yml"
    old_override = _yaml_text(override_path)
    if plan.mounts or proxy_env or (old_override is not None and plan.remove_mounts):
        context = {"mounts": plan.mounts, "proxy_env": proxy_env or {}}
        fragment = yaml_safe(jinja.get_template("supervisely/docker-compose.override.yml.j2").render(**context))
        for volume in ((fragment.get("services") or {}).get(HTTP_STORAGE) or {}).get("volumes") or []:
            if volume["source"].replace("$$", "$") != plan.mounts[volume["target"]]:
                raise BadInput(f"the mount of {volume['target']} would not read back as written",
                               "report this as a bug")
        if proxy_env and fragment["services"]["proxy"]["environment"] != proxy_env:
            raise BadInput("the proxy cache settings would not read back as written", "report this as a bug")
        if fragment.get("services") is None:
            fragment["services"] = {}
        if plan.remove_mounts:
            fragment["services"].setdefault(HTTP_STORAGE, {}).setdefault("volumes", [])
        drop = tuple(plan.remove_mounts)
        override = yamlfile.edit(override_path, old_override,
                                 lambda data: merge_override(override_path, data, fragment, drop))
        preview = yamlfile.edit(override_path, None, lambda data: merge_override(override_path, data, fragment, drop))
        files.append(decide(override_path, override, preview, old_override, secret=False))
    return files, plan


def yaml_safe(text: str) -> dict[str, Any]:
    """A rendered YAML fragment of ours, read back with a safe loader (an empty text is an empty mapping)."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text) or {}


def render(state: Any, out: Path, options: dict[str, Any]) -> list[RenderedFile]:
    """`render_supervisely` for the environment ``state`` (`provision.state.State`) with the render ``options``:
    ``grant`` (narrow to one grant), ``storage`` (the instance storage as ``render-env`` chose it,
    `provision.roles.choose_storage`; None or a grant no longer holding a credential: ``.env`` is not touched, so a
    repeated render never switches the instance storage by itself), ``proxy_env``, and the previous run's
    ``connections`` / ``mounts``. The options it decided (``storage``, ``connections``, ``mounts``) are stored back
    into ``options`` so the run can be recorded and repeated.

    Raises:
        BadInput: see `render_supervisely` and `provision.roles.choose_storage` (the ``storage`` grant no longer
            qualifies); an unknown ``grant``.
    """
    from provision.roles import choose_storage

    selected = state.select(options.get("grant"))
    grants = {g.name: g.grant for g in selected if g.grant is not None}
    storage = options.get("storage")
    storage = choose_storage(grants, storage, state.env) if storage in grants else None
    others = tuple(n for n in state.grants if n not in grants)
    files, plan = render_supervisely(grants, out, storage=storage, env=state.env, proxy_env=options.get("proxy_env"),
                                     previous=options, others=others)
    previous_connections = [c for c in options.get("connections", []) if c in others]
    previous_mounts = [m for m in options.get("mounts", []) if m not in plan.remove_mounts and m not in plan.mounts]
    options["storage"] = storage
    options["connections"] = sorted(set(plan.connections) | set(previous_connections))
    options["mounts"] = sorted(set(plan.mounts) | set(previous_mounts))
    return files
