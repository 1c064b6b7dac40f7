"""The Supervisely target: ``.env`` (storage keys), ``remote_links.yml`` (one connection) and
``docker-compose.override.yml`` (the ``http-storage`` mounts, the front-end cache settings), merged into the files
already there.

Readers: ``.env`` and ``docker-compose.override.yml`` are read by Docker Compose (``supervisely up -d``), whose
dotenv dialect differs from python-dotenv; ``remote_links.yml`` by Supervisely's http-storage (a YAML reader).
Storage settings: https://docs.supervisely.com/enterprise-edition/advanced-tuning/s3 .
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.models import Grant
from provision.render import yamlfile
from provision.render.envfile import check_env, merge_env
from provision.render.formats import RenderedFile, decide, environment, read_existing, read_text_exact
from provision.render.grants import AUTH_NAMES, S3_COMPATIBLE, holds_secret

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
KEY_FILE_TARGET = "/gcs.json"
"""Where Supervisely's ``http-storage`` reads a GCS key file (``STORAGE_CREDENTIALS_PATH``)."""

SUPERVISELY_AUTHS = {
    "minio": {"key_pair": "", "role": ""},
    "azure": {"key_pair": ""},
    "google": {"key_file": "", "ambient": ""},
}
"""Credential kinds each Supervisely ``STORAGE_PROVIDER`` can use: ``minio`` takes an access key or an IAM role
(AWS); ``azure`` only the account name + account key; ``google`` a key file mounted at `KEY_FILE_TARGET` or the
VM's attached service account."""
SUPERVISELY_REFUSALS = {
    "azure": ("Supervisely's Azure backend takes only the storage account name and the account key, and this grant "
              "holds {what}; a SAS is never written where the account key belongs",
              "provision the account key for Supervisely: `provision azure --account-key --full ...` (in this or "
              "another --env); keep the SAS grant for CVAT"),
    "minio": ("Supervisely's S3 backend takes an access key or an IAM role, and this grant holds {what}",
              "provision an access key or an IAM role"),
    "google": ("Supervisely's Google backend takes a service-account key file or the VM's attached service account, "
               "and this grant holds {what}", "provision a key file (`provision gcs` without --hmac) or --keyless"),
}

PROXY_CACHE_DEFAULTS = {
    "CACHE_PREVIEWS_SIZE": "1g", "CACHE_PREVIEWS_EXPIRES": "12h",
    "CACHE_STORAGE_SIZE": "10g", "CACHE_STORAGE_EXPIRES": "7d",
    "CACHE_IMAGE_CONVERTER_SIZE": "10g", "CACHE_IMAGE_CONVERTER_EXPIRES": "7d",
}
"""Supervisely's front-end (``proxy`` service) cache settings and their defaults."""
_CACHE_SIZE = re.compile(r"^[1-9][0-9]{0,5}[kmg]$")
_CACHE_TIME = re.compile(r"^[1-9][0-9]{0,5}(ms|s|m|h|d|w|M|y)$")


def check_supervisely(grant: Grant) -> None:
    """Refuse a grant whose credential Supervisely's backend for ``grant.storage_provider`` cannot use
    (`SUPERVISELY_AUTHS`), e.g. an Azure SAS (Supervisely's Azure backend needs the account key).

    Raises:
        BadInput: names what the grant holds and how to get a usable credential.
    """
    if grant.auth.kind not in SUPERVISELY_AUTHS[grant.storage_provider]:
        message, hint = SUPERVISELY_REFUSALS[grant.storage_provider]
        raise BadInput(message.format(what=AUTH_NAMES[grant.auth.kind]), hint)


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


def links_endpoint(grant: Grant) -> str:
    """The ``endpoint`` of a ``remote_links.yml`` connection: the host, with ``:port`` when not 443."""
    if grant.port and grant.port != 443 and ":" not in grant.endpoint.split("//")[-1]:
        return f"{grant.endpoint}:{grant.port}"
    return grant.endpoint


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


def merge_override(path: Path, data: Any, fragment: dict[str, Any]) -> Any:
    """Merge our ``services.<svc>.volumes`` and ``services.<svc>.environment`` entries (``fragment``) into the
    round-trip data of an existing Compose override (None: no file), in place.

    A volume of ours replaces existing volumes with the same container target (ours come last, after the volumes
    kept); an entry already as wanted is left untouched. ``environment`` entries are set key by key, in the map or
    list form the file uses. A list tagged ``!reset`` (Compose: drop the base file's value) becomes ``!override``
    holding ours. Every other service, key, comment, anchor and tag is kept.
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
            targets = {_volume_target(v) for v in ours["volumes"]}
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


def render_supervisely(grant: Grant, out: Path, connection: str, proxy_env: dict[str, str] | None = None
                       ) -> list[RenderedFile]:
    """Render Supervisely's ``.env``, ``docker-compose.override.yml`` and ``remote_links.yml`` into ``out``.

    Nothing is written here; see `provision.render.write`.

    Args:
        grant: the stored Grant.
        out: the directory printed by ``supervisely where`` (must exist).
        connection: the ``remote_links.yml`` connection name.
        proxy_env: ``services.proxy.environment`` entries (front-end cache settings), if any.

    A key-file grant (GCS) gets its key file mounted read-only at `KEY_FILE_TARGET` in ``http-storage`` by its
    absolute host path, next to the ``remote_links.yml`` mount, and ``STORAGE_CREDENTIALS_PATH`` pointing at it.

    Returns:
        The three files, each with its content and the action writing it would take.

    Raises:
        BadInput: the grant's credential is one Supervisely cannot use (`check_supervisely`); a value cannot be
            written so that its reader reads it back exactly; an existing file is not a regular file, larger than
            1 MiB, or (YAML) not UTF-8, malformed, of the wrong shape, or an alias bomb.
    """
    import yaml

    check_supervisely(grant)
    env = environment(links_endpoint=links_endpoint)
    secret = holds_secret(grant)
    mounts: dict[str, str] = {}
    key_file_target = None
    if grant.auth.kind == "key_file":
        key_file_target = KEY_FILE_TARGET
        mounts[KEY_FILE_TARGET] = str(Path(grant.auth.path).absolute())
    remote_links = out / "remote_links.yml"
    mounts[REMOTE_LINKS_TARGET] = str(remote_links)
    context = {"grant": grant, "auth": grant.auth, "connection": connection, "mounts": mounts,
               "key_file_target": key_file_target, "proxy_env": proxy_env or {},
               "s3_compatible": S3_COMPATIBLE}

    # .env
    block = env.get_template("supervisely/.env.j2").render(**context)
    expected = env_expected(grant, key_file_target)
    env_path = out / ".env"
    existing = read_text_exact(env_path)
    env_text = merge_env(existing, block, ENV_KEYS) if existing else block
    check_env(env_text, expected, ENV_KEYS)
    files = [decide(env_path, env_text, block, existing, secret)]

    # remote_links.yml
    links_text = env.get_template("supervisely/remote_links.yml.j2").render(**context)
    ours = yaml.safe_load(links_text)
    want = {"provider": grant.storage_provider, "endpoint": links_endpoint(grant)}
    if grant.auth.kind == "key_pair":
        want.update(access_key=grant.auth.access_key, secret_key=grant.auth.secret_key)
    elif grant.auth.kind == "role":
        want["iam_role"] = grant.auth.role_name
    if key_file_target:
        want["credentials_path"] = key_file_target
    if grant.region and grant.storage_provider in S3_COMPATIBLE:
        want["region"] = grant.region
    want["buckets"] = list(grant.buckets)
    if ours != {connection: want}:
        raise BadInput("remote_links.yml would not read back as written", "report this as a bug")
    old_links = _yaml_text(remote_links)
    links = yamlfile.edit(remote_links, old_links, lambda data: merge_links(remote_links, data, connection, want))
    preview = yamlfile.edit(remote_links, None, lambda data: merge_links(remote_links, data, connection, want))
    files.append(decide(remote_links, links, preview, old_links, secret))

    # docker-compose.override.yml
    fragment = yaml.safe_load(env.get_template("supervisely/docker-compose.override.yml.j2").render(**context))
    for volume in fragment["services"][HTTP_STORAGE]["volumes"]:
        if volume["source"].replace("$$", "$") != mounts[volume["target"]]:
            raise BadInput(f"the mount of {volume['target']} would not read back as written", "report this as a bug")
    if proxy_env and fragment["services"]["proxy"]["environment"] != proxy_env:
        raise BadInput("the proxy cache settings would not read back as written", "report this as a bug")
    override_path = out / "docker-compose.override.yml"
    old_override = _yaml_text(override_path)
    override = yamlfile.edit(override_path, old_override, lambda data: merge_override(override_path, data, fragment))
    preview = yamlfile.edit(override_path, None, lambda data: merge_override(override_path, data, fragment))
    files.append(decide(override_path, override, preview, old_override, secret=False))
    return files


def render(state: Any, out: Path, options: dict[str, Any]) -> list[RenderedFile]:
    """`render_supervisely` for ``state``'s grant with the render ``options`` ``connection`` (default
    ``provision-<env>``) and ``proxy_env``."""
    return render_supervisely(state.grant, out, options.get("connection") or f"provision-{state.env}",
                              options.get("proxy_env"))
