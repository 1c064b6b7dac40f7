"""Render platform configuration from the Grant, through Jinja templates, and merge it into existing files.

Templates (``templates/<target>/*.j2``) see only the Grant and the render options, never an SDK object. Every
value passes a quoting filter written for the parser that will really read the file, and every rendered file is
parsed back and compared with the intended values before anything is written: a value that cannot be written
safely is refused (`BadInput`, exit 2), never written mangled.

Readers: ``.env`` and ``docker-compose.override.yml`` are read by Docker Compose (``supervisely up -d``), whose
dotenv dialect differs from python-dotenv (shared/REFERENCE.md §1); ``remote_links.yml`` by PyYAML-compatible
YAML readers.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.files import atomic_write
from provision.models import Grant, KeyPair, SasToken
from provision.resources import packaged

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
"""Where Supervisely's ``http-storage`` reads a GCS key file (``STORAGE_CREDENTIALS_PATH``; shared/REFERENCE.md §1)."""

S3_COMPATIBLE = {"minio"}
"""Supervisely storage providers spoken over the S3 API: the only ones whose ``remote_links.yml`` connection and
CVAT ``specific_attributes`` carry a region (and, for CVAT, an ``endpoint_url``)."""

SUPERVISELY_AUTHS = {
    "minio": {"key_pair": "", "role": ""},
    "azure": {"key_pair": ""},
    "google": {"key_file": "", "ambient": ""},
}
"""Credential kinds each Supervisely ``STORAGE_PROVIDER`` can use (shared/REFERENCE.md §1): ``minio`` takes an
access key or an IAM role (AWS); ``azure`` only the account name + account key; ``google`` a key file mounted at
`KEY_FILE_TARGET` or the VM's attached service account."""
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
AUTH_NAMES = {"key_pair": "an access key", "sas": "a SAS token", "role": "an IAM role", "key_file": "a key file",
              "ambient": "no secret (an ambient identity)"}

_ENV_BARE = re.compile(r"^[A-Za-z0-9_./:@+,=%^~-]+$")
_LINE = re.compile(r"((?:[ \t]*\r?\n)*)(.*?)(\r?\n)?$", re.S)


def env_value(value: Any) -> str:
    """Quote ``value`` for a ``.env`` so Docker Compose and python-dotenv read back exactly ``value``.

    Rules (shared/REFERENCE.md §1, checked against Compose v2.40): plain characters stay bare; anything else is
    single-quoted (literal in both parsers, ``$`` and ``#`` included); a value holding ``'`` is double-quoted
    when it has none of ``$ \\ " ` `` (which Compose would interpolate or unescape).

    Raises:
        BadInput: the value holds a newline or NUL, or both ``'`` and one of ``$ \\ " ` ``.
    """
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if any(c in text for c in "\r\n\0"):
        raise BadInput("a value for .env holds a line break or NUL, which Compose cannot read back",
                       "use a value without line breaks")
    if _ENV_BARE.match(text):
        return text
    if "'" not in text:
        return f"'{text}'"
    if not any(c in text for c in '$\\"`'):
        return f'"{text}"'
    raise BadInput(
        f"a value for .env holds both ' and one of $ \\ \" ` ({len(text)} characters); no quoting makes Docker "
        "Compose and python-dotenv read it the same", "use a value without a single quote")


def yaml_str(value: Any) -> str:
    """A YAML double-quoted scalar for ``value`` (JSON string syntax, which YAML's double quotes accept)."""
    return json.dumps(str(value), ensure_ascii=False)


def compose_path(value: Any) -> str:
    """Escape ``$`` as ``$$`` so Compose does not interpolate a host path in a compose file."""
    return str(value).replace("$", "$$")


def mask(value: str) -> str:
    """A secret as shown in output: none of its characters, only its length."""
    return f"****({len(value)} chars, masked)"


def secrets_of(grant: Grant) -> list[str]:
    """The secret strings of ``grant`` (secret key, SAS token, and the SAS signature on its own), to mask wherever
    they would be printed."""
    found = [s for s in (getattr(grant.auth, "secret_key", None), getattr(grant.auth, "token", None)) if s]
    token = getattr(grant.auth, "token", None)
    if token:
        from urllib.parse import parse_qs

        found += [sig for sig in parse_qs(token).get("sig", []) if sig]
    return found


def mask_text(text: str, secrets: list[str]) -> str:
    """``text`` with each secret replaced by `mask` of it."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return text


@dataclass
class RenderedFile:
    """One output of ``render-env``.

    Attributes:
        path: absolute destination path.
        content: the complete new content.
        action: ``create`` | ``update`` | ``no change``.
        backup: where the previous content was copied (set when written over an existing file).
        preview: the part `provision` manages (for display; may hold secrets, mask before printing).
    """

    path: Path
    content: str
    action: str
    backup: Path | None = None
    preview: str = ""


def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(packaged("templates"))),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(env_value=env_value, yaml_str=yaml_str, compose_path=compose_path,
                       links_endpoint=links_endpoint)
    return env


def read_text_exact(path: Path) -> str:
    """A file's text with its bytes preserved exactly: no newline translation; bytes that are not UTF-8 kept as
    surrogate escapes (written back unchanged by `write`)."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def _decide(path: Path, content: str, preview: str) -> RenderedFile:
    if not path.exists():
        return RenderedFile(path, content, "create", preview=preview)
    old = read_text_exact(path)
    return RenderedFile(path, content, "no change" if old == content else "update", preview=preview)


# ---- .env -------------------------------------------------------------------------------------------------------
def merge_env(existing: str, block: str) -> str:
    """Merge the rendered storage ``block`` into an existing ``.env`` text.

    Parsing is python-dotenv's (``dotenv.parser.parse_stream``), whose chunks concatenate back to the input byte
    for byte. Managed keys (`ENV_KEYS`) present in ``block`` replace their lines in place (leading blank lines
    and the line ending kept); managed keys absent from ``block`` are removed; missing ones are appended after
    ``block``'s comment lines. Every other chunk is kept byte for byte.

    Returns:
        The new ``.env`` text.
    """
    from dotenv.parser import parse_stream

    wanted: dict[str, str] = {}
    header: list[str] = []
    for binding in parse_stream(io.StringIO(block)):
        if binding.key:
            wanted[binding.key] = binding.original.string.strip()
        elif binding.original.string.strip():
            header.append(binding.original.string.strip())
    out, seen = [], set()
    for binding in parse_stream(io.StringIO(existing)):
        chunk = binding.original.string
        if binding.key in ENV_KEYS and not binding.error:
            lead, _, ending = _LINE.match(chunk).groups()  # type: ignore[union-attr]
            if binding.key in wanted:
                out.append(f"{lead}{wanted[binding.key]}{ending or ''}")
                seen.add(binding.key)
            else:
                out.append(lead)
            continue
        out.append(chunk)
    text = "".join(out)
    missing = [line for key, line in wanted.items() if key not in seen]
    if missing:
        if text and not text.endswith("\n"):
            text += "\n"
        text += ("\n" if text.strip() else "") + "\n".join(header + missing) + "\n"
    return text


def _check_env(text: str, expected: dict[str, str]) -> None:
    """Parse ``text`` back with python-dotenv; refuse unless each managed key reads exactly as intended."""
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    for key, value in expected.items():
        if values.get(key) != value:
            raise BadInput(f"{key} would not read back as written in .env", "report this as a bug")
    for key in set(ENV_KEYS) - set(expected):
        if key in values:
            raise BadInput(f"{key} would stay in .env although this grant does not use it", "report this as a bug")


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


# ---- YAML files -------------------------------------------------------------------------------------------------
def _load_yaml_mapping(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BadInput(f"{path} is not valid YAML ({str(exc).splitlines()[0]})", "fix or move the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a YAML mapping", "fix or move the file")
    return data


def _volume_target(entry: Any) -> str | None:
    if isinstance(entry, dict):
        return entry.get("target")
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else None


def merge_override(existing: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """Merge our ``services.<svc>.volumes`` entries into an existing compose override.

    A volume of ours replaces an existing volume with the same container target; every other service, key and
    volume is kept. ``services.<svc>.environment`` maps are merged key by key.
    """
    merged = json.loads(json.dumps(existing))  # a deep copy of plain YAML data
    services = merged.setdefault("services", {})
    for name, ours in (fragment.get("services") or {}).items():
        service = services.setdefault(name, {}) or {}
        services[name] = service
        if "volumes" in ours:
            targets = {_volume_target(v) for v in ours["volumes"]}
            kept = [v for v in service.get("volumes", []) if _volume_target(v) not in targets]
            service["volumes"] = kept + ours["volumes"]
        if "environment" in ours:
            env = service.get("environment") or {}
            if isinstance(env, list):
                env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
            env.update(ours["environment"])
            service["environment"] = env
    return merged


def _dump_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


# ---- supervisely ------------------------------------------------------------------------------------------------
def render_supervisely(grant: Grant, out: Path, connection: str, proxy_env: dict[str, str] | None = None
                       ) -> list[RenderedFile]:
    """Render Supervisely's ``.env``, ``docker-compose.override.yml`` and ``remote_links.yml`` into ``out``.

    Nothing is written here; see `write`.

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
            written so that its reader reads it back exactly; an existing YAML file is malformed.
    """
    import yaml

    check_supervisely(grant)
    env = _environment()
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
    existing = read_text_exact(env_path) if env_path.exists() else ""
    env_text = merge_env(existing, block) if existing else block
    _check_env(env_text, expected)
    files = [_decide(env_path, env_text, block)]

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
    links = _load_yaml_mapping(remote_links)
    links[connection] = ours[connection]
    files.append(_decide(remote_links, _dump_yaml(links), _dump_yaml(ours)))

    # docker-compose.override.yml
    fragment = yaml.safe_load(env.get_template("supervisely/docker-compose.override.yml.j2").render(**context))
    for volume in fragment["services"][HTTP_STORAGE]["volumes"]:
        if volume["source"].replace("$$", "$") != mounts[volume["target"]]:
            raise BadInput(f"the mount of {volume['target']} would not read back as written", "report this as a bug")
    if proxy_env and fragment["services"]["proxy"]["environment"] != proxy_env:
        raise BadInput("the proxy cache settings would not read back as written", "report this as a bug")
    override_path = out / "docker-compose.override.yml"
    merged = merge_override(_load_yaml_mapping(override_path), fragment)
    files.append(_decide(override_path, _dump_yaml(merged), _dump_yaml(fragment)))
    return files


PROXY_CACHE_DEFAULTS = {
    "CACHE_PREVIEWS_SIZE": "1g", "CACHE_PREVIEWS_EXPIRES": "12h",
    "CACHE_STORAGE_SIZE": "10g", "CACHE_STORAGE_EXPIRES": "7d",
    "CACHE_IMAGE_CONVERTER_SIZE": "10g", "CACHE_IMAGE_CONVERTER_EXPIRES": "7d",
}
"""Supervisely's front-end (``proxy`` service) cache settings and their defaults (shared/REFERENCE.md §1)."""
_CACHE_SIZE = re.compile(r"^[1-9][0-9]{0,5}[kmg]$")
_CACHE_TIME = re.compile(r"^[1-9][0-9]{0,5}(ms|s|m|h|d|w|M|y)$")


def proxy_cache_env(settings: list[str]) -> dict[str, str]:
    """Turn ``--cache NAME=VALUE`` options into ``services.proxy.environment`` entries.

    Names are the variables of `PROXY_CACHE_DEFAULTS` without ``CACHE_``, lowercase, ``-`` for ``_``
    (``previews-size``). Sizes are nginx sizes (``512m``, ``10g``); expiry times nginx times (``12h``, ``7d``) —
    the proxy is nginx, whose ``proxy_cache_path max_size`` / ``inactive`` take them.

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


def links_endpoint(grant: Grant) -> str:
    """The ``endpoint`` of a ``remote_links.yml`` connection: the host, with ``:port`` when not 443."""
    if grant.port and grant.port != 443 and ":" not in grant.endpoint.split("//")[-1]:
        return f"{grant.endpoint}:{grant.port}"
    return grant.endpoint


def write(files: list[RenderedFile]) -> None:
    """Write each changed file atomically with mode 0600, after copying an existing one to
    ``<name>.provision-backup-<UTC timestamp>`` (0600). Unchanged files are not touched.

    Raises:
        BadInput: a destination is not writable (names it).
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for f in files:
        if f.action == "no change":
            continue
        try:
            if f.action == "update":
                f.backup = f.path.with_name(f"{f.path.name}.provision-backup-{stamp}")
                atomic_write(f.backup, f.path.read_bytes())  # 0600 from the start: it holds the old secret
            atomic_write(f.path, f.content.encode("utf-8", errors="surrogateescape"))
        except OSError as exc:
            raise BadInput(f"cannot write {f.path}: {exc.strerror}", "pass a writable --out directory") from None


def render_target(target: str, state: Any, out: Path, options: dict[str, Any]) -> list[RenderedFile]:
    """Render ``target``'s files for the grant of ``state`` into ``out`` (nothing written; see `write`).

    Args:
        target: ``supervisely`` or ``cvat`` (more targets register here; ``onepanel`` holds no secret and is
            not repeated).
        state: the environment's `provision.state.State` (its ``grant`` must be set).
        out: destination directory.
        options: render options (supervisely: ``connection``, the remote_links.yml connection name, and
            ``proxy_env``, the proxy cache settings; cvat: ``bucket``, ``display_name``, ``manifests``).

    Raises:
        BadInput: unknown target, or a value that cannot be written safely.
    """
    if target == "supervisely":
        return render_supervisely(state.grant, out, options.get("connection") or f"provision-{state.env}",
                                  options.get("proxy_env"))
    if target == "cvat":
        return render_cvat(state.grant, out, options.get("bucket"), options.get("display_name"),
                           options.get("manifests"))
    raise BadInput(f"unknown --target {target!r}", "use --target supervisely")


# ---- cvat ---------------------------------------------------------------------------------------------------------
CVAT_FILE = "cvat-cloudstorage.json"
CVAT_PROVIDER_TYPES = {"minio": "AWS_S3_BUCKET", "azure": "AZURE_CONTAINER", "google": "GOOGLE_CLOUD_STORAGE"}
"""CVAT's ``provider_type`` per Supervisely storage provider of the Grant (cvat-sdk 2.80 ``ProviderTypeEnum``): any
S3-compatible grant, GCS HMAC keys on ``storage.googleapis.com`` included, is an ``AWS_S3_BUCKET`` with an
``endpoint_url``."""
CVAT_LIMITS = {"display_name": 63, "key": 40, "secret_key": 64, "session_token": 440, "account_name": 24,
               "connection_string": 1024, "specific_attributes": 1024}
"""Maximum lengths CVAT's serializer accepts (cvat-sdk 2.80 ``CloudStorageWriteRequest`` validations)."""
AWS_S3_ENDPOINT = "s3.amazonaws.com"


def json_value(value: Any) -> str:
    """``value`` as a JSON literal (strings quoted and escaped, lists as arrays), for JSON templates."""
    return json.dumps(value, ensure_ascii=False)


def cvat_specific_attributes(grant: Grant) -> str:
    """CVAT's ``specific_attributes`` for ``grant``, urlencoded as ``k=v&k=v`` (CVAT reads it with ``parse_qsl``).

    For S3-compatible grants: ``region`` and, unless the endpoint is AWS itself, ``endpoint_url`` (the grant's own
    URL, else ``https://<endpoint>``) — without it CVAT talks to AWS (shared/REFERENCE.md §1 CVAT). Empty for
    Azure and GCS (CVAT builds their endpoints itself).
    """
    from urllib.parse import urlencode

    if grant.storage_provider not in S3_COMPATIBLE:
        return ""
    endpoint_url = grant.endpoint_url
    if endpoint_url is None and grant.endpoint != AWS_S3_ENDPOINT:
        endpoint_url = f"https://{grant.endpoint}"
    pairs = [("region", grant.region), ("endpoint_url", endpoint_url)]
    return urlencode([(k, v) for k, v in pairs if v])


def azure_connection_string(grant: Grant) -> str:
    """An Azure Storage connection string for ``grant`` (SAS or account key), pointing at its blob endpoint.

    Format: https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string —
    ``BlobEndpoint=<url>;SharedAccessSignature=<sas>`` for a SAS; ``DefaultEndpointsProtocol=https;AccountName=..;
    AccountKey=..;BlobEndpoint=<url>`` for the account key.
    """
    endpoint = grant.endpoint_url or grant.endpoint
    if grant.auth.kind == "sas":
        return f"BlobEndpoint={endpoint};SharedAccessSignature={grant.auth.token}"
    assert grant.auth.kind == "key_pair"
    return (f"DefaultEndpointsProtocol=https;AccountName={grant.auth.access_key};AccountKey={grant.auth.secret_key};"
            f"BlobEndpoint={endpoint}")


def _cvat_check(grant: Grant, bucket: str | None) -> str:
    """The bucket CVAT gets, after refusing grants CVAT cannot use. Raises `BadInput`."""
    if (grant.storage_provider, grant.auth.kind) not in CVAT_CREDENTIALS:
        if grant.auth.kind in ("role", "ambient"):
            mode = "IAM-role mode (no key)" if grant.auth.kind == "role" else "keyless mode (no secret)"
            raise BadInput(
                f"CVAT cannot use this grant: it is in {mode}, and CVAT needs a key (S3), a SAS token or account key "
                "(Azure) or a key file (GCS) — it never uses an instance role or managed identity and treats a "
                "missing key as anonymous access",
                "provision a key-based grant for CVAT in another environment, e.g. `provision s3 --env cvat ...` "
                "without --iam-role")
        raise BadInput(f"CVAT cannot use {AUTH_NAMES[grant.auth.kind]} for {grant.storage_provider} storage",
                       "provision a key, SAS or key file grant for CVAT")
    if bucket is None:
        return grant.buckets[0]
    if bucket not in grant.buckets:
        raise BadInput(f"bucket {bucket!r} is not part of this grant", f"use one of: {', '.join(grant.buckets)}")
    return bucket


def cvat_credentials(grant: Grant) -> tuple[str, dict[str, str]]:
    """CVAT's ``credentials_type`` and credential fields for ``grant`` (secrets included; mask before printing).

    - S3 / S3-compatible key pair: ``KEY_SECRET_KEY_PAIR`` with ``key`` and ``secret_key``.
    - Azure SAS on Azure itself: ``ACCOUNT_NAME_TOKEN_PAIR`` with ``account_name`` and ``session_token`` (an
      account SAS, which CVAT's attach check needs). Azure account key, or any Azure grant on another endpoint (an
      emulator, a sovereign cloud: CVAT otherwise builds ``<account>.blob.core.windows.net`` itself):
      ``CONNECTION_STRING`` (`azure_connection_string`).
    - GCS key file: ``KEY_FILE_PATH``; the key file itself is not part of the JSON body: it goes as the multipart
      field ``key_file`` (``provision cvat attach`` sends it).
    """
    return CVAT_CREDENTIALS[(grant.storage_provider, grant.auth.kind)](grant)


def _cvat_key_pair(grant: Grant) -> tuple[str, dict[str, str]]:
    auth = grant.auth
    assert isinstance(auth, KeyPair)
    return "KEY_SECRET_KEY_PAIR", {"key": auth.access_key, "secret_key": auth.secret_key}


def _cvat_azure(grant: Grant) -> tuple[str, dict[str, str]]:
    auth = grant.auth
    if isinstance(auth, SasToken) and grant.endpoint_url is None:
        return "ACCOUNT_NAME_TOKEN_PAIR", {"account_name": auth.account_name, "session_token": auth.token}
    return "CONNECTION_STRING", {"connection_string": azure_connection_string(grant)}


def _cvat_key_file(grant: Grant) -> tuple[str, dict[str, str]]:
    return "KEY_FILE_PATH", {}


CVAT_CREDENTIALS = {
    ("minio", "key_pair"): _cvat_key_pair,
    ("azure", "sas"): _cvat_azure,
    ("azure", "key_pair"): _cvat_azure,
    ("google", "key_file"): _cvat_key_file,
}
"""(storage provider, credential kind) -> CVAT's credentials for it (see `cvat_credentials`); a pair not listed
is a credential CVAT cannot use (shared/REFERENCE.md §1 CVAT: never an ambient identity)."""


def cvat_cloudstorage_body(grant: Grant, bucket: str | None = None, display_name: str | None = None,
                           manifests: list[str] | None = None) -> dict[str, Any]:
    """The body of CVAT's ``POST /api/cloudstorages`` for one bucket (Azure: container) of ``grant`` (what the
    template must produce, and what ``provision cvat attach`` sends).

    Fields (cvat-sdk 2.80 ``CloudStorageWriteRequest``; shared/REFERENCE.md §1 CVAT): ``provider_type``
    (`CVAT_PROVIDER_TYPES`), ``resource`` (the bucket), ``display_name``, ``credentials_type`` and its fields
    (`cvat_credentials`), ``specific_attributes`` (`cvat_specific_attributes`), ``manifests`` (object keys that must
    already exist in the bucket when attaching).

    Args:
        grant: the stored Grant.
        bucket: one of the grant's buckets; default the first.
        display_name: CVAT's display name, 1–63 characters; default the bucket name.
        manifests: manifest keys in the bucket (e.g. ``images/manifest.jsonl``); default none.

    Returns:
        The body as a plain dict, secrets included (mask before printing).

    Raises:
        BadInput: the grant holds a credential CVAT cannot use (IAM role, keyless, GCS HMAC...), ``bucket`` is not
            in the grant, or a value is longer than CVAT accepts.
    """
    resource = _cvat_check(grant, bucket)
    credentials_type, credentials = cvat_credentials(grant)
    body: dict[str, Any] = {
        "provider_type": CVAT_PROVIDER_TYPES[grant.storage_provider],
        "resource": resource,
        "display_name": resource if display_name is None else display_name,
        "credentials_type": credentials_type,
        **credentials,
        "specific_attributes": cvat_specific_attributes(grant),
        "manifests": list(manifests or []),
    }
    if not body["display_name"]:
        raise BadInput("the CVAT display name is empty", "pass --display-name with 1–63 characters")
    for field, limit in CVAT_LIMITS.items():
        if field in body and len(body[field]) > limit:
            secret = field in ("secret_key", "session_token", "connection_string")
            what = f"the {field.replace('_', ' ')}" if secret else f"{field} ({body[field]!r})"
            hint = {"display_name": "pass a shorter --display-name",
                    "key": "give CVAT a grant with a shorter key id: GCS HMAC access ids (61 characters) do not fit, "
                           "so use a key-file grant (`provision gcs` without --hmac) for CVAT"}.get(
                field, "use a shorter value")
            raise BadInput(f"{what} is {len(body[field])} characters; CVAT accepts at most {limit}", hint)
    for key in body["manifests"]:
        if not key or key.startswith("/") or any(c in key for c in "\r\n\0"):
            raise BadInput(f"invalid manifest key {key!r}", "give the object key in the bucket, e.g. "
                           "images/manifest.jsonl (create it with `provision manifest --upload`)")
    return body


def render_cvat(grant: Grant, out: Path, bucket: str | None = None, display_name: str | None = None,
                manifests: list[str] | None = None) -> list[RenderedFile]:
    """Render ``out/cvat-cloudstorage.json``: the body of CVAT's ``POST /api/cloudstorages`` for one bucket,
    through ``templates/cvat/cloudstorage.json.j2``, parsed back and compared with `cvat_cloudstorage_body`.

    Nothing is written here; `write` writes it atomically with mode 0600 (it holds the secret). For a GCS key-file
    grant the key file is sent alongside as the multipart field ``key_file`` (see `cvat_credentials`).

    Args:
        grant, bucket, display_name, manifests: as in `cvat_cloudstorage_body`.
        out: an existing directory.

    Returns:
        One file, with its content and the action writing it would take.

    Raises:
        BadInput: see `cvat_cloudstorage_body`; the rendered JSON would not read back as intended.
    """
    want = cvat_cloudstorage_body(grant, bucket, display_name, manifests)
    credentials_type, credentials = cvat_credentials(grant)
    env = _environment()
    env.filters.update(json_value=json_value, cvat_attributes=cvat_specific_attributes,
                       cvat_provider_type=CVAT_PROVIDER_TYPES.__getitem__)
    text = env.get_template("cvat/cloudstorage.json.j2").render(
        grant=grant, resource=want["resource"], display_name=want["display_name"],
        credentials_type=credentials_type, credentials=credentials, manifests=want["manifests"])
    try:
        ours = json.loads(text)
    except json.JSONDecodeError:
        raise BadInput(f"{CVAT_FILE} would not be valid JSON", "report this as a bug") from None
    if ours != want or list(ours) != list(want):
        raise BadInput(f"{CVAT_FILE} would not read back as written", "report this as a bug")
    return [_decide(out / CVAT_FILE, text, text)]


# ---- onepanel -----------------------------------------------------------------------------------------------------
ONEPANEL_FILE = "onepanel.env"
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class OnepanelLayout:
    """Where Onepanel's CVAT workspace syncs and stores trained models, in one bucket.

    Semantics (Onepanel docs, "Using data from cloud storage in CVAT"; shared/REFERENCE.md §1 Onepanel): the
    file syncer downloads ``<namespace>/<ONEPANEL_SYNC_DIRECTORY>`` (the workspace template prepends the namespace);
    CVAT writes trained models under ``<namespace>/<ONEPANEL_SYNC_DIRECTORY>/<ONEPANEL_WORKFLOW_MODEL_DIR>/`` and
    finds them in the synced copy, so both variables are relative: the first to the namespace, the second to the
    sync directory. A sync directory outside the namespace is still synced, but trained models are then stored
    where the syncer does not look, and must be uploaded to CVAT by hand.

    Attributes:
        namespace: the Onepanel namespace (a Kubernetes namespace name).
        sync_dir: ``ONEPANEL_SYNC_DIRECTORY``.
        model_dir: ``ONEPANEL_WORKFLOW_MODEL_DIR``.
        sync_prefix: the synced folder in the bucket (``<namespace>/<sync_dir>/``, or the bucket path given).
        model_prefix: the folder trained models go to (``<namespace>/<sync_dir>/<model_dir>/``).
        inside: True when the synced folder is inside the namespace (CVAT then sees trained models itself).
    """

    namespace: str
    sync_dir: str
    model_dir: str
    sync_prefix: str
    model_prefix: str
    inside: bool

    @property
    def prefixes(self) -> list[str]:
        """The folder keys to ensure in the bucket, parents first."""
        return [self.sync_prefix, self.model_prefix]


def _clean_path(value: str, what: str) -> str:
    parts = value.strip("/").split("/")
    if not value.strip("/") or any(p in ("", ".", "..") for p in parts) or any(
            c in value for c in "\r\n\0\\"):
        raise BadInput(f"invalid {what} {value!r}: use folder names separated by '/', without '.', '..' or "
                       "empty parts", f"e.g. {what} workflow-data")
    return "/".join(parts)


def onepanel_layout(namespace: str, sync_dir: str = "workflow-data", model_dir: str = "output") -> OnepanelLayout:
    """Validate the Onepanel options and work out the variables and bucket folders (see `OnepanelLayout`).

    Args:
        namespace: the Onepanel namespace (lowercase letters, digits and ``-``, ≤ 63 characters).
        sync_dir: the file syncer directory, relative to the namespace (default ``workflow-data``); a path
            starting with ``/`` is taken from the bucket root (inside the namespace if it starts with
            ``/<namespace>/``).
        model_dir: the trained-model folder, relative to the sync directory (default ``output``).

    Returns:
        The layout.

    Raises:
        BadInput: an invalid namespace or folder path.
    """
    if not _K8S_NAME.match(namespace or ""):
        raise BadInput(f"invalid --namespace {namespace!r}: Onepanel namespaces are 1–63 lowercase letters, "
                       "digits and '-', starting and ending with a letter or digit", "pass your namespace's name")
    model = _clean_path(model_dir, "--model-dir")
    absolute = sync_dir.startswith("/")
    sync = _clean_path(sync_dir, "--sync-dir")
    inside = True
    if absolute:
        if sync.startswith(f"{namespace}/"):
            sync = sync[len(namespace) + 1:]
        else:
            inside = False
    sync_prefix = f"{namespace}/{sync}/" if inside else f"{sync}/"
    return OnepanelLayout(namespace=namespace, sync_dir=sync, model_dir=model, sync_prefix=sync_prefix,
                          model_prefix=f"{namespace}/{sync}/{model}/", inside=inside)


def render_onepanel(grant: Grant, out: Path, layout: OnepanelLayout, bucket: str | None = None) -> list[RenderedFile]:
    """Render ``out/onepanel.env``: ``export ONEPANEL_SYNC_DIRECTORY=...`` and
    ``export ONEPANEL_WORKFLOW_MODEL_DIR=...`` (to export in Onepanel before creating the CVAT workspace), through
    ``templates/onepanel/onepanel.env.j2``, values quoted with `env_value` and parsed back with python-dotenv.

    Nothing is written here (see `write`); the bucket folders of ``layout.prefixes`` are made by
    ``provision.onepanel.ensure_folders``.

    Args:
        grant: the stored Grant (its first bucket, or ``bucket``, is the one named in the file's comment).
        out: an existing directory.
        layout: from `onepanel_layout`.
        bucket: one of the grant's buckets; default the first.

    Returns:
        One file, with its content and the action writing it would take.

    Raises:
        BadInput: ``bucket`` is not in the grant; a value would not read back as written.
    """
    from dotenv import dotenv_values

    bucket = bucket or grant.buckets[0]
    if bucket not in grant.buckets:
        raise BadInput(f"bucket {bucket!r} is not part of this grant", f"use one of: {', '.join(grant.buckets)}")
    text = _environment().get_template("onepanel/onepanel.env.j2").render(grant=grant, layout=layout, bucket=bucket)
    want = {"ONEPANEL_SYNC_DIRECTORY": layout.sync_dir, "ONEPANEL_WORKFLOW_MODEL_DIR": layout.model_dir}
    if dotenv_values(stream=io.StringIO(text), interpolate=False) != want:
        raise BadInput(f"{ONEPANEL_FILE} would not read back as written", "report this as a bug")
    return [_decide(out / ONEPANEL_FILE, text, text)]
