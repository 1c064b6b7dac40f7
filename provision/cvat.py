"""Attach a bucket of the stored grant to CVAT as a cloud storage, through CVAT's REST API (cvat-sdk).

The request body is `provision.render.cvat_cloudstorage_body` — the same dict ``render-env --target cvat`` writes —
so the file and the API call cannot disagree. Idempotent: CVAT is asked for its cloud storages with the same
resource and provider (``GET /api/cloudstorages?resource=...&provider_type=...``); one with the same endpoint is
updated in place (``PATCH /api/cloudstorages/<id>``), otherwise one is created (``POST /api/cloudstorages``).
CVAT never returns credentials, so an existing entry is always PATCHed (a rotated key reaches CVAT on re-run).
The body's field lengths are checked against CVAT's limits (`provision.render.cvat.CVAT_LIMITS`) before any request.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from provision.errors import BadInput, CloudRefused, MissingExtra
from provision.models import Grant
from provision.render import cvat_cloudstorage_body, mask_text, secrets_of
from provision.render.cvat import denied_address, endpoint_host, smokescreen_advice


@dataclass(frozen=True)
class AttachResult:
    """What ``attach`` did.

    Attributes:
        id: CVAT's cloud storage id.
        action: ``create`` or ``update``.
        resource: the bucket.
        display_name: the display name sent.
        url: the CVAT server URL.
        server_version: CVAT's version from ``/api/server/about``.
    """

    id: int
    action: str
    resource: str
    display_name: str
    url: str
    server_version: str

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for ``--json``."""
        return asdict(self)


def _endpoint_of(specific_attributes: str | None) -> str | None:
    return dict(parse_qsl(specific_attributes or "")).get("endpoint_url")


def _detail(body: Any) -> str:
    """CVAT's error body (DRF: ``{"detail": ...}``, ``{"field": ["msg"]}`` or ``["msg"]``) as one short line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(body) if body else None
    except (TypeError, ValueError):
        data = body
    if isinstance(data, dict):
        parts = [f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items()]
        text = "; ".join(parts)
    elif isinstance(data, list):
        text = "; ".join(map(str, data))
    else:
        text = str(data or "")
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def attach(grant: Grant, url: str, *, token: str | None = None, username: str | None = None,
           password: str | None = None, bucket: str | None = None, display_name: str | None = None,
           manifests: list[str] | None = None) -> AttachResult:
    """Create, or update in place, CVAT's cloud storage for one bucket of ``grant``.

    Args:
        grant: the stored Grant (a key pair: CVAT cannot use IAM-role or ambient grants).
        url: CVAT's URL, e.g. ``https://cvat.example.com`` (no scheme means https).
        token: a CVAT Personal Access Token (sent as ``Authorization: Bearer <token>``); or
        username, password: a CVAT account (session login with CSRF token).
        bucket, display_name, manifests: as in `provision.render.cvat_cloudstorage_body`. Manifest keys must
            already exist in the bucket (CVAT checks them).

    Returns:
        What was done and CVAT's id.

    Raises:
        BadInput: neither or both of ``token`` and ``username``/``password``; a grant CVAT cannot use; CVAT is not
            reachable at ``url``; several cloud storages for this bucket exist and none has ``display_name``.
        CloudRefused: CVAT refused the login or the cloud storage (its message, secrets masked), e.g. when it
            cannot reach the bucket with the key; when its SSRF proxy denied the endpoint's private address, the
            message says so and the hint gives ``SMOKESCREEN_OPTS`` (`provision.render.cvat.smokescreen_advice`).
        MissingExtra: cvat-sdk is not installed.
    """
    if token and (username or password):
        raise BadInput("give --token or --username/--password, not both", "drop one of them")
    if not token and not (username and password):
        raise BadInput("CVAT credentials are missing", "pass --token T (a Personal Access Token), or --username U "
                       "and --password P")
    body = cvat_cloudstorage_body(grant, bucket, display_name, manifests)
    if grant.auth.kind == "key_file" and not Path(grant.auth.path).is_file():
        raise BadInput(f"the key file {grant.auth.path} is missing", "re-run `provision gcs` for this environment "
                       "(with --rotate to issue a new key)")
    try:
        import urllib3
        from cvat_sdk import models
        from cvat_sdk.api_client.exceptions import ApiException, OpenApiException
        from cvat_sdk.core.client import AccessTokenCredentials, Client, Config
        from cvat_sdk.core.helpers import get_paginated_collection
    except ImportError:
        raise MissingExtra("cvat_sdk", "cvat") from None

    secrets = [s for s in secrets_of(grant) + [token or "", password or ""] if s]

    def refused(exc: Any, doing: str) -> CloudRefused:
        status = getattr(exc, "status", None)
        detail = mask_text(_detail(getattr(exc, "body", None)) or str(getattr(exc, "reason", "")), secrets)
        denied = denied_address(detail)
        if denied is not None:  # CVAT's SSRF proxy refused a private address
            return CloudRefused(f"CVAT at {url} cannot reach the storage endpoint {endpoint_host(grant)} ({denied}): "
                                "its SSRF proxy (smokescreen) denies private addresses",
                                smokescreen_advice(grant, denied))
        if status in (401, 403) or doing == "the login":
            return CloudRefused(f"CVAT at {url} refused {doing} (HTTP {status}: {detail})",
                                "check --token, or --username and --password, and that the user may manage "
                                "cloud storages")
        return CloudRefused(f"CVAT at {url} refused {doing} (HTTP {status}: {detail})",
                            "check that the CVAT server can reach the bucket with this key, and that every "
                            "--manifest exists in it")

    def unexpected(exc: Any, doing: str) -> BadInput:
        detail = mask_text(" ".join(str(exc).split())[:200], secrets)
        return BadInput(f"CVAT at {url} answered {doing} in a form cvat-sdk does not understand ({detail})",
                        "check that --url points at a CVAT 2.x server")

    def lost(exc: Any, doing: str) -> CloudRefused:
        return CloudRefused(f"the connection to CVAT at {url} failed during {doing} ({type(exc).__name__})",
                            "re-run the same command: attach is idempotent and updates what may have been created")

    @contextlib.contextmanager
    def translated(doing: str) -> Any:
        """cvat-sdk's errors inside the block as one-line ProvisionErrors (refused / not understood / lost)."""
        try:
            yield
        except ApiException as exc:
            raise refused(exc, doing) from None
        except OpenApiException as exc:
            raise unexpected(exc, doing) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise lost(exc, doing) from None

    try:
        client = Client(url, config=Config(), check_server_version=False)
    except Exception as exc:  # cvat-sdk raises InvalidHostException (a plain Exception) for a bad scheme
        raise BadInput(f"invalid CVAT --url {url!r} ({exc})", "e.g. --url https://cvat.example.com") from None
    with client:
        try:
            version = str(client.get_server_version())
        except ApiException as exc:
            raise refused(exc, "the server version request") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BadInput(f"cannot reach CVAT at {url} ({type(exc).__name__})",
                           "check --url and that CVAT is running") from None
        except (OpenApiException, ValueError) as exc:
            raise unexpected(exc, "the server version request") from None
        with translated("the login"):
            if token:
                client.login(AccessTokenCredentials(token))
            else:
                client.login((username or "", password or ""))
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(translated("the cloud storage"))  # exits last: the key file closes first
                api = client.api_client.cloudstorages_api
                found = [
                    s for s in get_paginated_collection(api.list_endpoint, resource=body["resource"],
                                                        provider_type=body["provider_type"])
                    if s.resource == body["resource"]
                    and getattr(s.provider_type, "value", s.provider_type) == body["provider_type"]
                    and _endpoint_of(getattr(s, "specific_attributes", "")) == _endpoint_of(body["specific_attributes"])
                ]
                named = [s for s in found if s.display_name == body["display_name"]]
                if len(found) > 1 and len(named) != 1:
                    ids = ", ".join(str(s.id) for s in found)
                    raise BadInput(f"CVAT has {len(found)} cloud storages for bucket {body['resource']} (ids {ids})",
                                   "pass --display-name of the one to update")
                existing = (named or found or [None])[0]
                send, extra = dict(body), {}
                if grant.auth.kind == "key_file":  # CVAT takes the GCS key file as a multipart upload
                    send["key_file"] = stack.enter_context(open(grant.auth.path, "rb"))
                    extra["_content_type"] = "multipart/form-data"
                if existing is None:
                    created, _ = api.create(models.CloudStorageWriteRequest(**send), **extra)
                    result_id, action = created.id, "create"
                else:
                    api.partial_update(existing.id, patched_cloud_storage_write_request=(
                        models.PatchedCloudStorageWriteRequest(**send)), **extra)
                    result_id, action = existing.id, "update"
        finally:
            if username and not token:
                try:
                    client.logout()
                except Exception:  # noqa: BLE001 — the session expires on its own
                    pass
    return AttachResult(id=int(result_id), action=action, resource=body["resource"],
                        display_name=body["display_name"], url=client.api_map.host, server_version=version)
