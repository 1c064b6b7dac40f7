"""The CVAT target: ``cvat-cloudstorage.json``, the body of CVAT's ``POST /api/cloudstorages`` for one bucket of the
grant (what ``provision cvat attach`` sends), through ``templates/cvat/cloudstorage.json.j2``; and, when the storage
endpoint is on a private address, the settings that let CVAT's SSRF proxy reach it (`render_smokescreen`).

Fields: cvat-sdk 2.80 ``CloudStorageWriteRequest``
(https://docs.cvat.ai/docs/api_sdk/sdk/reference/models/cloud-storage-write-request/).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from provision.errors import BadInput
from provision.models import Grant, KeyPair, SasToken
from provision.render.formats import RenderedFile, decide, environment, read_text_exact
from provision.render.grants import AUTH_NAMES, S3_COMPATIBLE, grant_bucket, holds_secret

CVAT_FILE = "cvat-cloudstorage.json"
CVAT_PROVIDER_TYPES = {"minio": "AWS_S3_BUCKET", "azure": "AZURE_CONTAINER", "google": "GOOGLE_CLOUD_STORAGE"}
"""CVAT's ``provider_type`` per Supervisely storage provider of the Grant (cvat-sdk 2.80 ``ProviderTypeEnum``): any
S3-compatible grant, GCS HMAC keys on ``storage.googleapis.com`` included, is an ``AWS_S3_BUCKET`` with an
``endpoint_url``."""
CVAT_LIMITS = {"display_name": 63, "key": 40, "secret_key": 64, "session_token": 440, "account_name": 24,
               "connection_string": 1024, "specific_attributes": 1024}
"""Maximum lengths CVAT's serializer accepts (cvat-sdk 2.80 ``CloudStorageWriteRequest`` validations)."""
AWS_S3_ENDPOINT = "s3.amazonaws.com"
SMOKESCREEN_FILE = "cvat-smokescreen.override.yml"
HELM_VALUES_FILE = "cvat-helm-values.yml"
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "::1/128"))
"""Addresses CVAT's smokescreen denies as a private range unless allowed (loopback, RFC 1918, IPv6 unique local)."""
SMOKESCREEN_SERVICES = ("cvat_server", "cvat_worker_import", "cvat_worker_export", "cvat_worker_annotation",
                        "cvat_worker_chunks")
"""CVAT's Compose services that read cloud storage (attach and listing, task creation, export, auto-annotation,
chunk preparation); each runs its own smokescreen with ``SMOKESCREEN_OPTS`` (CVAT's ``docker-compose.yml``:
``x-backend-env``, https://github.com/cvat-ai/cvat/blob/develop/docker-compose.yml)."""
_DENIED = re.compile(r"destination address \(?([0-9A-Fa-f:.]+)\)? was denied by rule '?Deny: Private Range", re.I)


def cvat_specific_attributes(grant: Grant) -> str:
    """CVAT's ``specific_attributes`` for ``grant``, urlencoded as ``k=v&k=v`` (CVAT reads it with ``parse_qsl``).

    For S3-compatible grants: ``region`` and, unless the endpoint is AWS itself, ``endpoint_url`` (the grant's own
    URL, else ``https://<endpoint>``) — without it CVAT talks to AWS (CVAT's S3 attributes). Empty for
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
    return grant_bucket(grant, bucket)


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
is a credential CVAT cannot use (CVAT never uses an ambient identity)."""


def cvat_cloudstorage_body(grant: Grant, bucket: str | None = None, display_name: str | None = None,
                           manifests: list[str] | None = None) -> dict[str, Any]:
    """The body of CVAT's ``POST /api/cloudstorages`` for one bucket (Azure: container) of ``grant`` (what the
    template must produce, and what ``provision cvat attach`` sends).

    Fields (cvat-sdk 2.80 ``CloudStorageWriteRequest``): ``provider_type``
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

    Nothing is written here; `provision.render.write` writes it atomically, 0600 when new (it holds the secret).
    For a GCS key-file grant the key file is sent alongside as the multipart field ``key_file``
    (see `cvat_credentials`).

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
    env = environment(cvat_attributes=cvat_specific_attributes, cvat_provider_type=CVAT_PROVIDER_TYPES.__getitem__)
    text = env.get_template("cvat/cloudstorage.json.j2").render(
        grant=grant, resource=want["resource"], display_name=want["display_name"],
        credentials_type=credentials_type, credentials=credentials, manifests=want["manifests"])
    try:
        ours = json.loads(text)
    except json.JSONDecodeError:
        raise BadInput(f"{CVAT_FILE} would not be valid JSON", "report this as a bug") from None
    if ours != want or list(ours) != list(want):
        raise BadInput(f"{CVAT_FILE} would not read back as written", "report this as a bug")
    path = out / CVAT_FILE
    return [decide(path, text, text, read_text_exact(path), holds_secret(grant))]


def endpoint_host(grant: Grant) -> str:
    """The host name or address of the grant's storage endpoint (from ``endpoint_url`` when set)."""
    if grant.endpoint_url:
        return urlparse(grant.endpoint_url).hostname or grant.endpoint
    return urlparse(grant.endpoint).hostname or grant.endpoint if "://" in grant.endpoint else grant.endpoint


def private_addresses(host: str) -> list[str]:
    """The addresses of ``host`` in `PRIVATE_NETWORKS`: the host itself when it is one, else what it resolves to
    here (an unresolvable name gives none).

    Returns:
        The addresses, in resolution order, without repeats (empty for a public endpoint).
    """
    try:
        found = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in socket.getaddrinfo(host, None)]
        except (OSError, UnicodeError, ValueError):
            found = []
    out: list[str] = []
    for ip in found:
        if any(ip.version == net.version and ip in net for net in PRIVATE_NETWORKS) and str(ip) not in out:
            out.append(str(ip))
    return out


def smokescreen_opts(addresses: list[str]) -> str:
    """``SMOKESCREEN_OPTS`` allowing exactly ``addresses`` (smokescreen's ``--allow-address``,
    https://github.com/stripe/smokescreen)."""
    return " ".join(f"--allow-address={a}" for a in addresses)


def denied_address(message: str) -> str | None:
    """The address in CVAT's smokescreen denial ("The destination address (10.0.0.5) was denied by rule 'Deny:
    Private Range'"), or None when ``message`` is not one."""
    match = _DENIED.search(message)
    return match.group(1) if match else None


def smokescreen_advice(grant: Grant, denied: str | None = None) -> str:
    """What to do when CVAT's SSRF proxy refuses the grant's endpoint: the ``SMOKESCREEN_OPTS`` value and the files
    ``render-env --target cvat`` writes for it (one line). ``denied``: the address CVAT named, if any."""
    addresses = [denied] if denied else private_addresses(endpoint_host(grant))
    opts = smokescreen_opts(addresses) or "--allow-address=<the endpoint's IP>"
    return (f"allow it with SMOKESCREEN_OPTS={opts} on CVAT's backend services: `provision render-env --target cvat` "
            f"writes {SMOKESCREEN_FILE} (docker compose -f docker-compose.yml -f {SMOKESCREEN_FILE} up -d) and "
            f"{HELM_VALUES_FILE} (helm upgrade RELEASE cvat/cvat --reuse-values -f {HELM_VALUES_FILE})")


def render_smokescreen(grant: Grant, out: Path) -> list[RenderedFile]:
    """When the grant's endpoint is on a private address (`private_addresses`), ``out/cvat-smokescreen.override.yml``
    (a Compose override setting ``SMOKESCREEN_OPTS`` on `SMOKESCREEN_SERVICES`) and ``out/cvat-helm-values.yml``
    (the chart's ``smokescreen.opts``), each parsed back and compared before anything is written; none for a public
    endpoint. CVAT's proxy denies private ranges by default; its Compose file passes ``SMOKESCREEN_OPTS`` to the
    backend services (https://github.com/cvat-ai/cvat/blob/develop/docker-compose.yml) and its Helm chart takes
    ``smokescreen.opts`` (https://github.com/cvat-ai/cvat/blob/develop/helm-chart/values.yaml).

    Returns:
        Zero or two files (no secret in them).

    Raises:
        BadInput: a file would not read back as intended.
    """
    import yaml

    host = endpoint_host(grant)
    addresses = private_addresses(host)
    if not addresses:
        return []
    opts = smokescreen_opts(addresses)
    env = environment()
    wanted = {SMOKESCREEN_FILE: {"services": {s: {"environment": {"SMOKESCREEN_OPTS": opts}}
                                              for s in SMOKESCREEN_SERVICES}},
              HELM_VALUES_FILE: {"smokescreen": {"opts": opts}}}
    templates = {SMOKESCREEN_FILE: "cvat/smokescreen.override.yml.j2", HELM_VALUES_FILE: "cvat/helm-values.yml.j2"}
    files = []
    for name, template in templates.items():
        text = env.get_template(template).render(host=host, addresses=addresses, opts=opts,
                                                 services=SMOKESCREEN_SERVICES, loopback=all(
                                                     ipaddress.ip_address(a).is_loopback for a in addresses))
        if yaml.safe_load(text) != wanted[name]:
            raise BadInput(f"{name} would not read back as written", "report this as a bug")
        path = out / name
        files.append(decide(path, text, text, read_text_exact(path), secret=False))
    return files


def render(state: Any, out: Path, options: dict[str, Any]) -> list[RenderedFile]:
    """`render_cvat` for ``state``'s grant with the render ``options`` ``bucket``, ``display_name`` and
    ``manifests``, then `render_smokescreen` (the endpoint on a private address)."""
    grant = state.one(options.get("grant"), "render-env --target cvat").grant
    files = render_cvat(grant, out, options.get("bucket"), options.get("display_name"), options.get("manifests"))
    return files + render_smokescreen(grant, out)


