"""Azure Blob: a storage account with secure defaults, private containers, and exactly one credential per grant —
an account SAS (default), the account key (``--account-key``) or RBAC for a managed identity (``--keyless``).

Two modes:

- **management** (``--account``): Azure Resource Manager through azure-mgmt-resource / azure-mgmt-storage /
  azure-mgmt-authorization with ``DefaultAzureCredential`` (no browser prompt). Every management client is made by
  `AzureProvider.mgmt`, which points it at ``$PROVISION_AZURE_ARM_ENDPOINT`` (default
  https://management.azure.com; sovereign clouds and the tests' fake ARM server set it).
- **data-plane only** (``--connection-string`` / ``AZURE_STORAGE_CONNECTION_STRING``, and ``--env sandbox``, which
  uses the sandbox's Azurite account): containers and SAS through azure-storage-blob; no management call.

Every data-plane client is made by `AzureProvider.blob_service`. Every mutating call goes through `Plan.write`.
Rules enforced and their sources: shared/REFERENCE.md §3 (names, secure account defaults, SAS ``ss=b srt=co``,
``spr=https``, signing with key2, RBAC role ids) and §5 (Azurite).
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from provision.errors import BadInput, CloudRefused, PartialFailure, ProvisionError, refusing
from provision.models import Access, Ambient, Grant, KeyPair, Resource, SasToken
from provision.names import (
    check_container,
    check_principal_id,
    check_resource_group,
    check_storage_account,
    parse_duration,
    parse_expiry,
    resolve_buckets,
)
from provision.policies import AZURE_BLOB_ROLES, SAS_RESOURCE_TYPES, SAS_SERVICES, sas_permissions
from provision.profiles import Profile
from provision.providers.base import Plan, VerifyRow
from provision.state import State

ARM_ENDPOINT_ENV = "PROVISION_AZURE_ARM_ENDPOINT"
"""Environment variable naming the Azure Resource Manager endpoint (sovereign clouds, tests)."""
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
DEFAULT_LOCATION = "westeurope"
DEFAULT_SAS_EXPIRY = "30d"
DEFAULT_RENEW_BEFORE = "7d"
SAS_CLOCK_SKEW = timedelta(minutes=5)
"""A SAS starts this long before it is issued, so a server whose clock runs behind accepts it at once."""
PUBLIC_BLOB_SUFFIX = ".blob.core.windows.net"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
MiB = 1024 * 1024
SINGLE_PUT_SIZE = 8 * MiB
"""Blobs up to this size (bytes) are uploaded in one Put Blob; larger ones in blocks of `BLOCK_SIZE`."""
BLOCK_SIZE = 4 * MiB
READ_SIZE = 1 * MiB
SECURE_ACCOUNT: list[tuple[str, Any, str]] = [
    ("allow_blob_public_access", False, "blob public access off"),
    ("minimum_tls_version", "TLS1_2", "TLS 1.2 minimum"),
    ("enable_https_traffic_only", True, "HTTPS only"),
    ("allow_cross_tenant_replication", False, "no cross-tenant replication"),
]
"""Secure storage-account settings: (attribute of the account's ``properties``, wanted value, label).
Source: shared/REFERENCE.md §3."""
_TLS_OK = ("TLS1_2", "TLS1_3")
_DENIED = ("AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch", "AuthenticationFailed",
           "AuthorizationFailure", "AuthorizationServiceMismatch", "AuthorizationProtocolMismatch",
           "AuthorizationSourceIPMismatch", "InsufficientAccountPermissions")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# ---- pure helpers ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SasExpiry:
    """A parsed ``--sas-expiry``: a lifetime (``30d``, ``12h``) or a fixed UTC instant.

    Attributes:
        text: the value as given.
        lifetime: the lifetime, for ``Nd`` / ``Nh``; else None.
        instant: the fixed expiry (aware UTC), for an ISO-8601 value; else None.
    """

    text: str
    lifetime: timedelta | None
    instant: datetime | None

    @classmethod
    def parse(cls, value: str, now: datetime) -> SasExpiry:
        """Parse ``value`` (``Nd``, ``Nh`` or an ISO-8601 UTC instant) against ``now`` (aware UTC).

        Raises:
            BadInput: unparseable, zero, without a time zone, or not in the future (`provision.names.parse_expiry`).
        """
        instant = parse_expiry(value, now, "--sas-expiry")
        try:
            return cls(value, parse_duration(value, "--sas-expiry"), None)
        except BadInput:
            return cls(value, None, instant)

    def expiry(self, start: datetime) -> datetime:
        """The expiry of a SAS issued at ``start`` (aware UTC, whole seconds)."""
        if self.instant is not None:
            return self.instant
        assert self.lifetime is not None
        return (start + self.lifetime).replace(microsecond=0)


def sas_fields(token: str) -> dict[str, str]:
    """The query parameters of a SAS token (``sp``, ``st``, ``se``, ``srt``, ``ss``, ``spr``, ``sig`` ...)."""
    return {k: v[0] for k, v in parse_qs(token.lstrip("?"), keep_blank_values=True).items()}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def issue_sas(account: str, key: str, access: Access, start: datetime, expiry: datetime) -> str:
    """An account SAS for the Blob service, signed with ``key``.

    Args:
        account: the storage account name.
        key: the base64 account key that signs it (key2 in management mode).
        access: ``readonly`` → ``sp=rl``; ``full`` → ``sp=racwdl`` (`provision.policies.sas_permissions`).
        start, expiry: aware UTC datetimes (``st`` / ``se``).

    Returns:
        The token, a query string without the leading ``?``: ``ss=b``, ``srt=co``, ``spr=https`` always.
    """
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, Services, generate_account_sas

    return generate_account_sas(
        account, key, resource_types=ResourceTypes.from_string(SAS_RESOURCE_TYPES),
        permission=AccountSasPermissions.from_string(sas_permissions(access)), expiry=expiry, start=start,
        services=Services.from_string(SAS_SERVICES), protocol="https")


def sas_renewal(stored: SasToken, access: Access, now: datetime, renew_before: timedelta) -> str | None:
    """Why the stored SAS must be replaced, or None when it can be kept.

    The rule (issue 4): keep it until less than the smaller of ``renew_before`` and half its lifetime remains;
    replace it at once when it does not grant ``access`` exactly (``sp``) or is not an https-only Blob account SAS
    for containers + objects.

    Args:
        stored: the SAS in state (its token's ``st`` is the issue time minus `SAS_CLOCK_SKEW`).
        access: the access the grant must have now.
        now: the current time (aware UTC).
        renew_before: ``--renew-before``.

    Returns:
        A one-line reason, or None.
    """
    fields = sas_fields(stored.token)
    wanted = sas_permissions(access)
    if set(fields.get("sp", "")) != set(wanted):
        return f"access changed: the stored SAS has sp={fields.get('sp', '')}, {access.value} needs sp={wanted}"
    if (fields.get("ss"), set(fields.get("srt", "")), fields.get("spr")) != (SAS_SERVICES, set(SAS_RESOURCE_TYPES),
                                                                             "https"):
        return "the stored SAS is not an https-only Blob account SAS for containers and objects"
    expires = stored.expires_at.astimezone(timezone.utc)
    left = expires - now
    if left <= timedelta(0):
        return f"the stored SAS expired at {expires:%Y-%m-%dT%H:%M:%SZ}"
    issued = _instant(fields["st"]) + SAS_CLOCK_SKEW if "st" in fields else expires - 2 * renew_before
    threshold = min(renew_before, (expires - issued) / 2)
    if left < threshold:
        return f"renewal: {_span(left)} left of the stored SAS, under {_span(threshold)}"
    return None


def _span(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    return f"{hours} h {int(delta.total_seconds() // 60) % 60} min"


def _when(instant: datetime) -> str:
    return f"{instant.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def _code(exc: Any) -> str:
    """The service's error code of an azure-core exception (``AuthorizationPermissionMismatch`` ...), or ''."""
    code = getattr(exc, "error_code", None)
    if code is None and getattr(exc, "error", None) is not None:
        code = getattr(exc.error, "code", None)
    return str(getattr(code, "value", code) or "")


def _value(value: Any) -> Any:
    """The plain value of an SDK enum member (``PublicAccess.NONE`` → ``"None"``); other values unchanged."""
    return getattr(value, "value", value)


def _status(exc: Any) -> int | None:
    return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)


def _azure_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "Azure refused or could not be reached" (azure-core's AzureError family)."""
    from azure.core.exceptions import AzureError

    return (AzureError,)


@contextlib.contextmanager
def _refused_as(doing: str) -> Iterator[None]:
    """Turn Azure's errors (refusals, authentication, transport) inside the block into one-line `CloudRefused`."""
    try:
        yield
    except _azure_errors() as exc:
        raise CloudRefused(f"Azure refused {doing}: {_one_line(exc)}",
                           "check the Azure credentials (az login, managed identity) and that the account "
                           "exists") from None


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    code = _code(exc)
    first = text[0] if text else type(exc).__name__
    return f"{code}: {first}" if code and code not in first else first


def file_md5(path: Path) -> bytes:
    """The binary MD5 of a local file, read `READ_SIZE` bytes at a time.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_SIZE):
            digest.update(chunk)
    return digest.digest()


def _content_settings(key: str, md5: bytes | None) -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type=mimetypes.guess_type(key)[0], content_md5=bytearray(md5) if md5 else None)


def _without_key(connection_string: str) -> str:
    """A connection string with its ``AccountKey`` (and any ``SharedAccessSignature``) dropped: safe to store."""
    parts = [p for p in connection_string.split(";") if p.strip()
             and not p.strip().lower().startswith(("accountkey=", "sharedaccesssignature="))]
    return ";".join(parts) + ";"


# ---- how provision reaches one account's data plane --------------------------------------------------------------
@dataclass
class AccountAccess:
    """One storage account's data plane as `provision` reaches it.

    Attributes:
        name: the account name.
        blob_url: its blob endpoint without a trailing slash (``https://<account>.blob.core.windows.net``, or the
            emulator's path-style ``https://127.0.0.1:PORT/<account>``).
        verify: ``connection_verify`` for azure clients: a CA file (the sandbox) or True (system trust /
            ``REQUESTS_CA_BUNDLE``).
        keys: returns ``{"key1": ..., "key2": ...}`` (management: ``list_keys``; sandbox: both; connection string:
            its one key under both names); called lazily, at most once.
        signing_key_name: the key a SAS is signed with, for messages (``key2``, or the connection string's key).
        other: the sandbox's second account (name, key1), for "another account" probes; None elsewhere.
        location: the account's location (management mode), else None.
    """

    name: str
    blob_url: str
    verify: str | bool
    keys: Callable[[], dict[str, str]]
    signing_key_name: str = "key2"
    other: tuple[str, str, str] | None = None
    location: str | None = None
    _cache: dict[str, str] = field(default_factory=dict)

    def key(self, which: str) -> str:
        """``key1`` or ``key2`` (cached)."""
        if not self._cache:
            self._cache.update(self.keys())
        return self._cache[which]

    def forget_keys(self) -> None:
        """Drop the cached keys (after a key was regenerated)."""
        self._cache.clear()

    @property
    def public(self) -> bool:
        """True when the endpoint is the public cloud's default for this account."""
        return self.blob_url == f"https://{self.name}{PUBLIC_BLOB_SUFFIX}"


# ---- the provider -------------------------------------------------------------------------------------------------
class AzureProvider:
    """Provision Azure Blob containers and one credential for exactly them.

    Args:
        profile: the validated inputs (``provider == "azure"``). No I/O happens here. A connection string's
            ``AccountKey`` is kept in this object only: ``profile.connection_string`` is replaced by the same string
            without it (the CLI stores the profile in state and prints re-apply commands from it). With
            ``--account-key`` and no explicit ``--readonly``, ``profile.access`` becomes ``full`` (the key is).

    Raises:
        BadInput: from `check` (before any cloud call): invalid container/account/resource-group names, a
            subscription or principal that is not a GUID, an unparseable or past ``--sas-expiry``, conflicting
            options (``--account-key`` with ``--readonly`` or ``--keyless``, management-only options in
            data-plane mode, SAS options without a SAS, ``--account`` different from the connection string's),
            a connection string without an account key or with an http endpoint.
    """

    name = "azure"

    def __init__(self, profile: Profile, now: datetime | None = None) -> None:
        self.profile = profile
        self.now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
        self._connection_string: str | None = None
        self._credential: Any = None
        self._sandbox: Any = None
        self._access: AccountAccess | None = None
        self._subscription: str | None = None
        self.containers = self.check()

    # ---- validation (pure, before any call) -------------------------------------------------------------------
    @property
    def data_plane(self) -> bool:
        """True in data-plane-only mode (sandbox or connection string): no management call at all."""
        return self.profile.sandbox or self.profile.connection_string is not None

    @property
    def mode(self) -> str:
        """``sas`` | ``account_key`` | ``keyless``."""
        return "account_key" if self.profile.account_key else "keyless" if self.profile.keyless else "sas"

    def check(self) -> list[str]:
        """Validate the profile for Azure; returns the container names.

        Raises:
            BadInput: see the class docstring.
        """
        p = self.profile
        containers = resolve_buckets(p.buckets, p.prefix, check_container, "container")
        if p.account_key and p.keyless:
            raise BadInput("--account-key and --keyless are mutually exclusive", "a grant has exactly one credential")
        if p.account_key:
            if "access" in p.model_fields_set and p.access == Access.readonly:
                raise BadInput("--account-key cannot be read-only: the account key is full access to every "
                               "container of the account", "drop --readonly, or drop --account-key for a read-only "
                               "SAS (the default)")
            p.access = Access.full
        if p.keyless:
            if not p.principal_id:
                raise BadInput("--keyless needs the managed identity's principal id", "pass --keyless PRINCIPAL_ID")
            p.principal_id = check_principal_id(p.principal_id)
        elif p.principal_id:
            raise BadInput("a principal id is only used with --keyless", "pass --keyless PRINCIPAL_ID or drop it")
        if self.mode != "sas":
            other = "--account-key" if p.account_key else "--keyless"
            for name, value in (("--sas-expiry", p.sas_expiry), ("--renew-before", p.renew_before)):
                if value is not None:
                    raise BadInput(f"{name} applies to a SAS, not to {other}", f"drop {name}")
        text = p.sas_expiry or DEFAULT_SAS_EXPIRY
        parse_expiry(text, datetime(1970, 1, 1, tzinfo=timezone.utc), "--sas-expiry")  # syntax, zone, zero
        self.expiry: SasExpiry | None = None
        self.expiry_error: BadInput | None = None
        try:
            self.expiry = SasExpiry.parse(text, self.now)
        except BadInput as exc:  # in the past: refused by apply, but verify/destroy of an old grant still work
            self.expiry_error = exc
        self.renew_before = parse_duration(p.renew_before or DEFAULT_RENEW_BEFORE, "--renew-before")
        if self.renew_before <= timedelta(0):
            raise BadInput(f"invalid --renew-before {p.renew_before!r}: it must be positive", "pass e.g. 7d")
        if p.account:
            check_storage_account(p.account)
        self._check_mode()
        return containers

    def _check_mode(self) -> None:
        p = self.profile
        env_cs = os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or None
        if p.sandbox and p.connection_string:
            raise BadInput("--connection-string does not apply to --env sandbox (it uses the sandbox's account)",
                           "drop --connection-string, or use another --env")
        if not p.sandbox and (p.connection_string or env_cs):
            self._connection_string = p.connection_string or env_cs
            if p.connection_string is None or "accountkey=" not in p.connection_string.lower():
                # a stored (key-less) connection string: the key comes from the environment, if it names the account
                if env_cs and p.connection_string and _cs_value(env_cs, "AccountName") == _cs_value(
                        p.connection_string, "AccountName"):
                    self._connection_string = env_cs
            self._parse_connection_string()
            p.connection_string = _without_key(self._connection_string or "")
        if self.data_plane:
            where = "--env sandbox" if p.sandbox else ("data-plane-only mode (--connection-string or "
                                                        "AZURE_STORAGE_CONNECTION_STRING)")
            given = [flag for flag, value in (("--resource-group", p.resource_group), ("--location", p.location),
                                              ("--subscription", p.subscription), ("--harden", p.harden),
                                              ("--keyless", p.keyless)) if value]
            if given:
                raise BadInput(f"{given[0]} needs the management plane, which {where} does not use",
                               "drop it, or pass --account without a connection string for the management plane")
        else:
            if not p.account:
                raise BadInput("no storage account given", "pass --account NAME (3–24 a-z0-9), or "
                               "--connection-string for an existing account, or --env sandbox")
            check_resource_group(self.resource_group)
            if p.subscription and not _GUID.match(p.subscription):
                raise BadInput(f"invalid --subscription {p.subscription!r}: a subscription id is a GUID",
                               "find it with `az account list --query [].id`")

    def _parse_connection_string(self) -> None:
        """Read account, key and endpoint of the connection string with azure-storage-blob's own parser."""
        from azure.storage.blob import BlobServiceClient

        text = self._connection_string or ""
        try:
            client = BlobServiceClient.from_connection_string(text)
        except (ValueError, KeyError, AttributeError, TypeError):
            raise BadInput("the connection string is malformed (expected AccountName=...;AccountKey=...;...)",
                           "copy it from the portal: storage account → Access keys → Connection string") from None
        key = getattr(client.credential, "account_key", None) if client.credential is not None else None
        name = client.account_name
        if not name:
            raise BadInput("the connection string names no account (AccountName=...)",
                           "copy it from the portal: storage account → Access keys → Connection string")
        if "sharedaccesssignature=" in text.lower():
            raise BadInput("the connection string holds a SAS, not the account key: provision signs its SAS with "
                           "the account key", "use the account's key connection string (Access keys)")
        url = client.url.rstrip("/")
        if not url.startswith("https://"):
            raise BadInput(f"the connection string's blob endpoint {url} is not https: an https-only SAS (spr=https) "
                           "cannot be used over http", "serve the endpoint over HTTPS (the sandbox does: --env "
                           "sandbox)")
        if self.profile.account and self.profile.account != name:
            raise BadInput(f"--account {self.profile.account!r} differs from the connection string's account "
                           f"{name!r}", "drop --account, or pass that account's connection string")
        check_storage_account(name)
        self._cs_parts = (name, key, url)

    @property
    def resource_group(self) -> str:
        """``--resource-group``, or ``provision-<account>``."""
        return self.profile.resource_group or f"provision-{self.profile.account}"

    # ---- the seams: credentials and clients -------------------------------------------------------------------
    def sandbox(self) -> Any:
        """The running sandbox's Azure endpoint. Raises BadInput when none runs or it has no Azurite."""
        if self._sandbox is None:
            from provision.sandbox import require_info

            self._sandbox = require_info().require_azure()
        return self._sandbox

    def credential(self) -> Any:
        """``DefaultAzureCredential`` without the interactive browser prompt (the SDK's own credential chain)."""
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return self._credential

    @staticmethod
    def arm_endpoint() -> str:
        """The Resource Manager endpoint: ``$PROVISION_AZURE_ARM_ENDPOINT`` or https://management.azure.com."""
        return (os.environ.get(ARM_ENDPOINT_ENV) or DEFAULT_ARM_ENDPOINT).rstrip("/")

    def mgmt(self, kind: str, subscription: str) -> Any:
        """A management client (``resource``, ``storage`` or ``authorization``) for ``subscription``, pointed at
        `arm_endpoint` with the matching token scope (``<endpoint>/.default``); azure-core retries 3 times."""
        base = self.arm_endpoint()
        kwargs: dict[str, Any] = {"base_url": base, "credential_scopes": [f"{base}/.default"], "retry_total": 3}
        if kind == "resource":
            from azure.mgmt.resource.resources import ResourceManagementClient

            return ResourceManagementClient(self.credential(), subscription, **kwargs)
        if kind == "storage":
            from azure.mgmt.storage import StorageManagementClient

            return StorageManagementClient(self.credential(), subscription, **kwargs)
        from azure.mgmt.authorization import AuthorizationManagementClient

        return AuthorizationManagementClient(self.credential(), subscription, **kwargs)

    def blob_service(self, access: AccountAccess, credential: Any, pool: int = 10) -> Any:
        """A BlobServiceClient for ``access``'s account with ``credential`` (a SAS string, or
        ``{"account_name", "account_key"}``): the SDK's exponential retry (3 retries, 1 s base), blobs over
        `SINGLE_PUT_SIZE` in `BLOCK_SIZE` blocks, ``pool`` pooled connections."""
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from azure.storage.blob import BlobServiceClient, ExponentialRetry
        from urllib3.util.retry import Retry

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=Retry(
            total=False, redirect=False, raise_on_status=False))  # retries are azure-core's, as in its own adapter
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return BlobServiceClient(
            access.blob_url, credential=credential, connection_verify=access.verify,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1),
            max_single_put_size=SINGLE_PUT_SIZE, max_block_size=BLOCK_SIZE, connection_timeout=10, read_timeout=60,
            transport=RequestsTransport(session=session, session_owner=True, connection_verify=access.verify))

    @staticmethod
    def key_credential(access: AccountAccess, which: str = "key1") -> dict[str, str]:
        """The shared-key credential of ``access``'s account (``key1``: the admin credential)."""
        return {"account_name": access.name, "account_key": access.key(which)}

    def subscription(self) -> str:
        """The subscription id: ``--subscription``, ``AZURE_SUBSCRIPTION_ID``, or the only one the credential sees.

        Raises:
            BadInput: none or several are visible and none was given.
        """
        if self._subscription:
            return self._subscription
        chosen = self.profile.subscription or os.environ.get("AZURE_SUBSCRIPTION_ID")
        if chosen:
            if not _GUID.match(chosen):
                raise BadInput(f"invalid AZURE_SUBSCRIPTION_ID {chosen!r}: a subscription id is a GUID",
                               "fix the variable or pass --subscription")
        else:
            from azure.core.rest import HttpRequest

            # azure-mgmt-resource 26 no longer ships SubscriptionClient: one GET through the same client pipeline
            client = self.mgmt("resource", "00000000-0000-0000-0000-000000000000")
            response = client.send_request(HttpRequest(
                "GET", f"{self.arm_endpoint()}/subscriptions?api-version={SUBSCRIPTIONS_API_VERSION}"))
            response.raise_for_status()
            ids = [s["subscriptionId"] for s in response.json().get("value", [])
                   if s.get("state", "Enabled") == "Enabled"]
            if len(ids) != 1:
                raise BadInput(f"{'no' if not ids else len(ids)} enabled Azure subscriptions are visible to these "
                               "credentials and none was chosen", "pass --subscription ID or set "
                               "AZURE_SUBSCRIPTION_ID")
            chosen = ids[0]
        self._subscription = chosen.lower()
        return self._subscription

    # ---- the account's data plane -------------------------------------------------------------------------------
    def data_access(self) -> AccountAccess:
        """The data plane of the account in data-plane-only mode (sandbox or connection string).

        Raises:
            BadInput: ``--account`` names another account than the sandbox's.
        """
        if self._access is not None:
            return self._access
        if self.profile.sandbox:
            endpoint = self.sandbox()
            acct = endpoint.account
            if self.profile.account and self.profile.account != acct.name:
                raise BadInput(f"--account {self.profile.account!r} is not the sandbox's account {acct.name!r}",
                               "drop --account with --env sandbox")
            self._access = AccountAccess(
                name=acct.name, blob_url=endpoint.account_url().rstrip("/"), verify=endpoint.ca_file,
                keys=lambda: {"key1": acct.key1, "key2": acct.key2}, signing_key_name="key2",
                other=(endpoint.other.name, endpoint.other.key1, endpoint.account_url(endpoint.other.name)))
        else:
            name, key, url = self._cs_parts

            def keys() -> dict[str, str]:
                if not key:
                    raise BadInput(f"the account key of {name!r} is not known here (the state keeps the connection "
                                   "string without it)", "set AZURE_STORAGE_CONNECTION_STRING to the account's "
                                   "connection string, or pass --connection-string")
                return {"key1": key, "key2": key}

            self._access = AccountAccess(name=name, blob_url=url, verify=True, keys=keys,
                                         signing_key_name="the connection string's key")
        return self._access

    def _stored_access(self, state: State) -> AccountAccess:
        """The account's data plane for a later command (verify, objects, destroy): data-plane mode as in
        `data_access`; management mode from the state's records (subscription, resource group) + ``list_keys``."""
        if self.data_plane:
            return self.data_access()
        if self._access is not None:
            return self._access
        account = self.profile.account or ""
        record = state.find("storage_account", account)
        group = state.find("resource_group", record.parent) if record and record.parent else None
        if record is None or group is None or not group.parent:
            raise BadInput(f"environment {state.env!r} records no storage account", "run `provision azure` first")
        self._subscription = group.parent
        with _refused_as(f"reading storage account {account}"):
            storage = self.mgmt("storage", group.parent)
            props = storage.storage_accounts.get_properties(group.name, account)
        self._access = self._mgmt_access(storage, group.name, props)
        return self._access

    def _mgmt_access(self, storage: Any, group: str, account: Any) -> AccountAccess:
        name = self.profile.account or ""

        def keys() -> dict[str, str]:
            with _refused_as(f"listing the keys of storage account {name}"):
                listed = storage.storage_accounts.list_keys(group, name).keys_property or []
            return {k.key_name: k.value for k in listed}

        endpoints = account.properties.primary_endpoints if account is not None and account.properties else None
        url = (endpoints.blob if endpoints and endpoints.blob else f"https://{name}{PUBLIC_BLOB_SUFFIX}").rstrip("/")
        return AccountAccess(name=name, blob_url=url, verify=True, keys=keys, signing_key_name="key2",
                             location=getattr(account, "location", None) or self.profile.location)

    # ---- apply ------------------------------------------------------------------------------------------------
    def apply(self, state: State, plan: Plan, save: Callable[[], None]) -> Grant | None:
        """Ensure account, containers and credential (see `provision.providers.base.Provider`).

        Returns:
            The Grant; None in dry-run when a new SAS or key would be issued.

        Raises:
            BadInput: data-plane ``--rotate`` of an account key, an ambiguous subscription, the sandbox not running.
            CloudRefused: Azure refused before anything was created (credentials, permission, name taken).
            PartialFailure: Azure refused after something was created; state records it.
        """
        from azure.core.exceptions import AzureError, ClientAuthenticationError

        if plan.rotate and self.mode == "account_key" and self.data_plane:
            raise BadInput("the account key cannot be rotated without the management plane",
                           "rotate it in the portal (Access keys) or with `az storage account keys renew`, then "
                           "re-run with the new connection string")
        if self.expiry_error is not None and self.mode == "sas" and not plan.dry_run:
            raise self.expiry_error
        before = len([r for r in state.resources if r.created])
        try:
            if self.data_plane:
                access = self.data_access()
                self._ensure_containers_data_plane(access, state, plan, save)
                auth = self._ensure_credential(access, state, plan, save, regenerate=None)
            else:
                access, regenerate = self._apply_management(state, plan, save)
                auth = self._ensure_credential(access, state, plan, save, regenerate) if access else None
                if access is None and self.mode != "keyless":
                    self._plan_new_credential(plan)
        except ClientAuthenticationError as exc:
            raise CloudRefused(f"Azure refused the credentials: {_one_line(exc)}",
                               "sign in (az login), use a managed identity or set AZURE_CLIENT_ID/SECRET/TENANT_ID; "
                               "or try --env sandbox") from None
        except ProvisionError:
            raise
        except AzureError as exc:
            created = len([r for r in state.resources if r.created]) > before
            message = f"Azure refused: {_one_line(exc)}"
            if created:
                raise PartialFailure(message, "state records what was created; re-run or `provision destroy`") from None
            raise CloudRefused(message, "check the credentials' permissions and the names") from None
        if auth is None:
            return None
        return self.grant(access, auth)  # type: ignore[arg-type]

    def grant(self, access: AccountAccess, auth: Any) -> Grant:
        """The Grant for ``auth`` on this profile's containers of ``access``'s account."""
        return Grant(provider="azure", storage_provider="azure", access=self.profile.access, buckets=self.containers,
                     endpoint=access.blob_url, endpoint_url=None if access.public else access.blob_url, port=None,
                     secure=access.blob_url.startswith("https://"), region=access.location, auth=auth)

    def _create(self, state: State, plan: Plan, save: Callable[[], None], resource: Resource, detail: str,
                call: Callable[..., Any], **kwargs: Any) -> Any:
        """`Plan.create` with HttpResponseError as the cloud's refusal."""
        from azure.core.exceptions import HttpResponseError

        return plan.create(state, save, resource, detail, call, (HttpResponseError,), **kwargs)

    def _adopt(self, state: State, plan: Plan, save: Callable[[], None], resource: Resource, detail: str) -> None:
        known = state.find(resource.kind, resource.name)
        if known is None:
            plan.note("adopt", resource.kind, resource.name, f"{detail}; adopted (destroy never deletes it)")
            if not plan.dry_run:
                state.record(resource)
                save()
        else:
            plan.note("no change", resource.kind, resource.name, detail)

    # ---- data-plane-only containers ---------------------------------------------------------------------------
    def _ensure_containers_data_plane(self, access: AccountAccess, state: State, plan: Plan,
                                      save: Callable[[], None]) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        service = self.blob_service(access, self.key_credential(access))
        for name in self.containers:
            client = service.get_container_client(name)
            try:
                props = client.get_container_properties()
            except ResourceNotFoundError:
                resource = Resource(kind="container", name=name, created=True, parent=access.name)
                try:
                    self._create(state, plan, save, resource, "private (no anonymous access)",
                                 client.create_container)
                except ResourceExistsError:
                    # azure-core retried a create whose answer was lost: absent a moment ago, present in our own
                    # account now, so our first attempt made it — keep it tracked as created
                    state.record(resource)
                    save()
                continue
            self._adopt(state, plan, save, Resource(kind="container", name=name, created=False, parent=access.name),
                        "private" if not props.public_access else f"public access {props.public_access}")
            if props.public_access:
                policy = client.get_container_access_policy()
                plan.write("update", "container", name, f"public access {props.public_access} → off (private)",
                           client.set_container_access_policy, signed_identifiers={
                               i.id: i.access_policy for i in policy.get("signed_identifiers") or []},
                           public_access=None)

    # ---- management plane -------------------------------------------------------------------------------------
    def _apply_management(self, state: State, plan: Plan,
                          save: Callable[[], None]) -> tuple[AccountAccess | None, Callable[[str], None] | None]:
        """Resource group, storage account, containers (and role assignments for --keyless).

        Returns:
            (the account's data plane, or None in dry-run when the account does not exist yet; a function that
            regenerates a key, for --rotate).
        """
        subscription = self.subscription()
        resource, storage = self.mgmt("resource", subscription), self.mgmt("storage", subscription)
        group = self.resource_group
        account_name = self.profile.account or ""
        current = self._read_account(storage, group, account_name)  # a taken name is refused before any create
        self._ensure_resource_group(resource, subscription, group, state, plan, save)
        account = self._ensure_account(storage, group, account_name, current, state, plan, save)
        access = self._mgmt_access(storage, group, account) if account is not None else None
        for name in self.containers:
            self._ensure_container_mgmt(storage, group, account_name, name, account is not None, state, plan, save)
        if self.mode == "keyless":
            auth = self.mgmt("authorization", subscription)
            for name in self.containers:
                self._ensure_role_assignment(auth, subscription, group, account_name, name, state, plan, save)

        def regenerate(which: str) -> None:
            from azure.mgmt.storage.models import StorageAccountRegenerateKeyParameters

            storage.storage_accounts.regenerate_key(group, account_name,
                                                    StorageAccountRegenerateKeyParameters(key_name=which))

        return access, regenerate

    def _ensure_resource_group(self, client: Any, subscription: str, group: str, state: State, plan: Plan,
                               save: Callable[[], None]) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.mgmt.resource.resources.models import ResourceGroup

        location = self.profile.location or DEFAULT_LOCATION
        try:
            current = client.resource_groups.get(group)
        except ResourceNotFoundError:
            self._create(state, plan, save, Resource(kind="resource_group", name=group, created=True,
                                                     parent=subscription),
                         f"in {location}", client.resource_groups.create_or_update, resource_group_name=group,
                         parameters=ResourceGroup(location=location, tags={"provision:env": state.env}))
            return
        self._adopt(state, plan, save, Resource(kind="resource_group", name=group, created=False, parent=subscription),
                    f"in {current.location}")

    @staticmethod
    def _read_account(client: Any, group: str, name: str) -> Any:
        """The account in ``group``, or None when it is not there and its name is free.

        Raises:
            CloudRefused: the name is taken (by another tenant, or in another resource group).
        """
        from azure.core.exceptions import ResourceNotFoundError
        from azure.mgmt.storage.models import StorageAccountCheckNameAvailabilityParameters

        try:
            return client.storage_accounts.get_properties(group, name)
        except ResourceNotFoundError:
            pass
        check = client.storage_accounts.check_name_availability(
            StorageAccountCheckNameAvailabilityParameters(name=name, type="Microsoft.Storage/storageAccounts"))
        if not check.name_available:
            raise CloudRefused(f"storage account name {name!r} is taken ({check.message or _value(check.reason)})",
                               "account names are global across Azure: choose another --account, or pass "
                               "--resource-group if the account is yours")
        return None

    def _ensure_account(self, client: Any, group: str, name: str, current: Any, state: State, plan: Plan,
                        save: Callable[[], None]) -> Any:
        """The storage account, created with `SECURE_ACCOUNT` settings when missing; an adopted one's insecure
        settings are reported, and changed only with ``--harden`` (an account `provision` created is kept
        secure)."""
        from azure.mgmt.storage.models import (
            Sku,
            StorageAccountCreateParameters,
            StorageAccountPropertiesCreateParameters,
        )

        location = self.profile.location or DEFAULT_LOCATION
        if current is None:
            settings = {attr: value for attr, value, _ in SECURE_ACCOUNT}
            parameters = StorageAccountCreateParameters(
                sku=Sku(name="Standard_LRS"), kind="StorageV2", location=location,
                tags={"provision:env": state.env},
                properties=StorageAccountPropertiesCreateParameters(**settings))
            poller = self._create(state, plan, save, Resource(kind="storage_account", name=name, created=True,
                                                              parent=group),
                                  f"StorageV2, Standard_LRS, in {location}: "
                                  + ", ".join(label for _, _, label in SECURE_ACCOUNT),
                                  client.storage_accounts.begin_create, resource_group_name=group, account_name=name,
                                  parameters=parameters)
            return poller.result() if poller is not None else None
        record = state.find("storage_account", name)
        ours = record is not None and record.created
        insecure = self.insecure_settings(current)
        detail = f"{_value(current.kind)}, {_value(current.sku.name) if current.sku else '?'}, in {current.location}"
        self._adopt(state, plan, save, Resource(kind="storage_account", name=name, created=False, parent=group), detail)
        if insecure and (self.profile.harden or ours):
            from azure.mgmt.storage.models import (
                StorageAccountPropertiesUpdateParameters,
                StorageAccountUpdateParameters,
            )

            fixes = {attr: value for attr, value, label in SECURE_ACCOUNT if label in insecure}
            plan.write("update", "storage_account", name, "hardened: " + ", ".join(insecure),
                       client.storage_accounts.update, resource_group_name=group, account_name=name,
                       parameters=StorageAccountUpdateParameters(
                           properties=StorageAccountPropertiesUpdateParameters(**fixes)))
            return client.storage_accounts.get_properties(group, name) if not plan.dry_run else current
        if insecure:
            plan.note("no change", "storage_account", name, "INSECURE, not changed (pass --harden to fix): wants "
                      + ", ".join(insecure))
        return current

    @staticmethod
    def insecure_settings(account: Any) -> list[str]:
        """Labels of `SECURE_ACCOUNT` settings that ``account`` (a StorageAccount model) does not have."""
        props = account.properties
        bad = []
        for attr, wanted, label in SECURE_ACCOUNT:
            value = _value(getattr(props, attr, None) if props is not None else None)
            ok = (value in _TLS_OK) if attr == "minimum_tls_version" else value == wanted
            if not ok:
                bad.append(label)
        return bad

    def _ensure_container_mgmt(self, client: Any, group: str, account: str, name: str, account_exists: bool,
                               state: State, plan: Plan, save: Callable[[], None]) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.mgmt.storage.models import BlobContainer, ContainerProperties

        current = None
        if account_exists:
            try:
                current = client.blob_containers.get(group, account, name)
            except ResourceNotFoundError:
                current = None
        private = BlobContainer(container_properties=ContainerProperties(public_access="None"))
        if current is None:
            self._create(state, plan, save, Resource(kind="container", name=name, created=True, parent=account),
                         "private (no anonymous access)", client.blob_containers.create, resource_group_name=group,
                         account_name=account, container_name=name, blob_container=private)
            return
        level = str(_value(getattr(current.container_properties, "public_access", None)) or "None")
        self._adopt(state, plan, save, Resource(kind="container", name=name, created=False, parent=account),
                    "private" if level == "None" else f"public access {level}")
        if level != "None":
            plan.write("update", "container", name, f"public access {level} → off (private)",
                       client.blob_containers.update, resource_group_name=group, account_name=account,
                       container_name=name, blob_container=private)

    @staticmethod
    def container_scope(subscription: str, group: str, account: str, container: str) -> str:
        """The ARM resource id of a blob container (the scope of its role assignments)."""
        return (f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/"
                f"{account}/blobServices/default/containers/{container}")

    @staticmethod
    def role_assignment_name(scope: str, role_id: str, principal: str) -> str:
        """A deterministic GUID for (scope, role, principal), so a re-run finds the assignment it made."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"provision:{scope.lower()}:{role_id}:{principal.lower()}"))

    def _ensure_role_assignment(self, client: Any, subscription: str, group: str, account: str, container: str,
                                state: State, plan: Plan, save: Callable[[], None]) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

        role_name, role_id = AZURE_BLOB_ROLES[self.profile.access]
        principal = self.profile.principal_id or ""
        scope = self.container_scope(subscription, group, account, container)
        name = self.role_assignment_name(scope, role_id, principal)
        for stale in [r for r in state.resources if r.kind == "role_assignment" and r.parent == container
                      and r.name != name and r.created]:
            plan.write("delete", "role_assignment", stale.name, f"on {container} (access changed)",
                       self._delete_role_assignment, client=client, scope=scope, assignment=stale.name)
            if not plan.dry_run:
                state.forget("role_assignment", stale.name)
                save()
        try:
            current = client.role_assignments.get(scope, name)
        except ResourceNotFoundError:
            current = None
        except HttpResponseError:
            if not plan.dry_run:  # in a dry run the container (the scope) may not exist yet
                raise
            current = None
        if current is not None:
            plan.note("no change", "role_assignment", name, f"{role_name} on {container} for {principal}")
            return
        parameters = RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
                               f"{role_id}", principal_id=principal, principal_type="ServicePrincipal")
        try:
            self._create(state, plan, save, Resource(kind="role_assignment", name=name, created=True, parent=container),
                         f"{role_name} on {container} for {principal}", client.role_assignments.create, scope=scope,
                         role_assignment_name=name, parameters=parameters)
        except HttpResponseError as exc:
            if _code(exc) != "RoleAssignmentExists":
                raise
            plan.note("adopt", "role_assignment", container, f"{role_name} for {principal} already assigned (by "
                      "another name); destroy leaves it")

    @staticmethod
    def _delete_role_assignment(client: Any, scope: str, assignment: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            client.role_assignments.delete(scope, assignment)
        except ResourceNotFoundError:
            pass

    # ---- the credential ---------------------------------------------------------------------------------------
    def _plan_new_credential(self, plan: Plan) -> None:
        """Dry-run with no account yet: record the credential that would be issued."""
        if self.mode == "sas":
            expiry = f"expires {_when(self.expiry.expiry(self.now))}" if self.expiry else str(self.expiry_error)
            plan.note("issue", "sas", self.profile.account or "", f"account SAS ss={SAS_SERVICES} "
                      f"srt={SAS_RESOURCE_TYPES} sp={sas_permissions(self.profile.access)} spr=https, {expiry}, "
                      "signed with key2")
        else:
            plan.note("issue", "account_key", self.profile.account or "", "key1 of the account (full access)")

    def _ensure_credential(self, access: AccountAccess, state: State, plan: Plan, save: Callable[[], None],
                           regenerate: Callable[[str], None] | None) -> Any:
        if self.mode == "keyless":
            return Ambient()
        if self.mode == "account_key":
            return self._ensure_account_key(access, state, plan, regenerate)
        return self._ensure_sas(access, state, plan, save, regenerate)

    def _ensure_account_key(self, access: AccountAccess, state: State, plan: Plan,
                            regenerate: Callable[[str], None] | None) -> KeyPair | None:
        stored = state.grant.auth if state.grant and isinstance(state.grant.auth, KeyPair) else None
        if stored is not None and stored.access_key != access.name:
            stored = None
        if plan.rotate:
            reason = "rotation: key1 regenerated; the old key stops working now"
            if regenerate is not None:
                plan.write("update", "storage_account", access.name, "regenerate key1 (revokes the old account key)",
                           regenerate, which="key1")
                access.forget_keys()
        elif stored is not None:
            if stored.secret_key == access.key("key1"):
                plan.note("no change", "account_key", access.name, "key1 (full access to the account)")
                return stored
            reason = "key1 changed since the last run (rotated outside provision)"
        else:
            reason = "key1 of the account: full access to every container in it (Supervisely's Azure backend)"
        key = plan.write("issue", "account_key", access.name, reason, access.key, which="key1")
        return KeyPair(access_key=access.name, secret_key=key) if key is not None else None

    def _ensure_sas(self, access: AccountAccess, state: State, plan: Plan, save: Callable[[], None],
                    regenerate: Callable[[str], None] | None) -> SasToken | None:
        stored = state.grant.auth if state.grant and isinstance(state.grant.auth, SasToken) else None
        if stored is not None and stored.account_name != access.name:
            stored = None
        if self.expiry is None and (stored is None or plan.rotate or sas_renewal(
                stored, self.profile.access, self.now, self.renew_before)):
            plan.note("issue", "sas", access.name, f"a new SAS is due, but {self.expiry_error}")
            return None
        reason = None if stored is None else sas_renewal(stored, self.profile.access, self.now, self.renew_before)
        if stored is not None and reason is None and not plan.rotate:
            fields = sas_fields(stored.token)
            plan.note("no change", "sas", access.name, f"sp={fields.get('sp', '')}, expires {_when(stored.expires_at)}"
                      f" ({_span(stored.expires_at - self.now)} left)")
            differs = self._expiry_differs(stored)
            if differs:
                plan.note("no change", "sas", access.name, f"--sas-expiry {self.expiry.text} differs from the stored "
                          f"SAS ({differs}): kept; pass --rotate to issue one with the new expiry")
            return stored
        if stored is None:
            reason = f"new account SAS, signed with {access.signing_key_name}"
            if access.signing_key_name != "key2":
                reason += " (revoking it means rotating that key)"
        elif plan.rotate:
            reason = "rotation (--rotate)"
            if regenerate is not None:
                plan.write("update", "storage_account", access.name, "regenerate key2: revokes every SAS signed with "
                           "it (this environment's old SAS and any other's on this account)", regenerate, which="key2")
                access.forget_keys()
                if not plan.dry_run:  # the stored SAS is dead now: a crash before the new one is saved must not
                    state.grant = None  # leave a re-run believing it still works
                    save()
            else:
                reason += (f"; the old SAS stays valid until {_when(stored.expires_at)}: revoking it means rotating "
                           f"{access.signing_key_name}")
        assert self.expiry is not None
        start = self.now - SAS_CLOCK_SKEW
        expiry = self.expiry.expiry(self.now)
        permission = sas_permissions(self.profile.access)
        token = plan.write("issue", "sas", access.name, f"{reason}: ss={SAS_SERVICES} srt={SAS_RESOURCE_TYPES} "
                           f"sp={permission} spr=https, expires {_when(expiry)}", self._sign, access=access,
                           start=start, expiry=expiry)
        if token is None:
            return None
        return SasToken(account_name=access.name, token=token, expires_at=expiry)

    def _sign(self, access: AccountAccess, start: datetime, expiry: datetime) -> str:
        return issue_sas(access.name, access.key("key2"), self.profile.access, start, expiry)

    def _expiry_differs(self, stored: SasToken) -> str | None:
        """How the stored SAS's expiry differs from ``--sas-expiry`` (None when the same, within a minute)."""
        if self.expiry is None:
            return f"it expires {_when(stored.expires_at)}"
        if self.expiry.instant is not None:
            if abs((self.expiry.instant - stored.expires_at).total_seconds()) > 60:
                return f"it expires {_when(stored.expires_at)}"
            return None
        fields = sas_fields(stored.token)
        if "st" not in fields or self.expiry.lifetime is None:
            return None
        lifetime = stored.expires_at - (_instant(fields["st"]) + SAS_CLOCK_SKEW)
        if abs((lifetime - self.expiry.lifetime).total_seconds()) > 60:
            return f"its lifetime is {_span(lifetime)}, expiring {_when(stored.expires_at)}"
        return None

    # ---- destroy ----------------------------------------------------------------------------------------------
    def destroy(self, state: State, plan: Plan, save: Callable[[], None], delete_data: bool) -> list[str]:
        """Delete what `provision` created, newest first; adopted resources are only forgotten.

        Data-plane mode deletes only containers. Management mode deletes role assignments, containers, the storage
        account and the resource group that `provision` created — the account only when none of its containers
        holds a blob (or with ``delete_data``), the group only when nothing else is left in it.

        Returns:
            Names of adopted resources left in place, and credentials that stay valid (an adopted account's SAS
            until its expiry, its key1).

        Raises:
            BadInput: a container (or created account) still holds blobs and ``delete_data`` is False (checked
                before anything is deleted).
            PartialFailure: Azure refused a deletion; state keeps what still exists.
        """
        from azure.core.exceptions import AzureError

        ours = [r for r in reversed(state.resources) if r.created]
        kept = [f"{r.kind} {r.name}" for r in state.resources if not r.created]
        try:
            if self.data_plane:
                self._destroy_data_plane(state, plan, save, delete_data, ours)
            else:
                self._destroy_management(state, plan, save, delete_data, ours)
        except AzureError as exc:
            raise PartialFailure(f"Azure refused a deletion: {_one_line(exc)}",
                                 "state keeps what still exists; fix the cause and run destroy again") from None
        account_gone = any(r.kind == "storage_account" for r in ours) and not self.data_plane
        auth = state.grant.auth if state.grant else None
        if not account_gone and isinstance(auth, SasToken) and not plan.dry_run:
            kept.append(f"sas of {auth.account_name} (valid until {_when(auth.expires_at)}; revoke it by rotating "
                        f"the key that signed it)")
        if not account_gone and isinstance(auth, KeyPair):
            kept.append(f"account key key1 of {auth.access_key} (rotate it to revoke)")
        return kept

    def _has_blobs(self, service: Any, container: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return next(iter(service.get_container_client(container).list_blobs(results_per_page=1)), None) is not None
        except ResourceNotFoundError:
            return False

    def _admin_service(self, state: State, access: AccountAccess) -> Any:
        """A data-plane client with the strongest credential known: the account key, else the grant's own."""
        try:
            return self.blob_service(access, self.key_credential(access))
        except BadInput:
            grant = state.grant
            if grant is not None and grant.access == Access.full and isinstance(grant.auth, SasToken):
                return self.blob_service(access, grant.auth.token)  # a full account SAS may delete containers
            raise

    def _destroy_data_plane(self, state: State, plan: Plan, save: Callable[[], None], delete_data: bool,
                            ours: list[Resource]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        containers = [r for r in ours if r.kind == "container"]
        if not containers:
            return
        access = self.data_access()
        service = self._admin_service(state, access)
        if not delete_data:
            for r in containers:
                if self._has_blobs(service, r.name):
                    raise BadInput(f"container {r.name!r} (created by provision) still holds blobs",
                                   "pass --delete-data to delete them with it, or empty it first")
        for r in containers:
            try:
                plan.write("delete", "container", r.name, "container and its blobs" if delete_data else "container",
                           service.delete_container, container=r.name)
            except ResourceNotFoundError:
                plan.note("no change", "container", r.name, "already gone")
            if not plan.dry_run:
                state.forget(r.kind, r.name)
                save()

    def _destroy_management(self, state: State, plan: Plan, save: Callable[[], None], delete_data: bool,
                            ours: list[Resource]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        if not ours:
            return
        group_record = next((r for r in state.resources if r.kind == "resource_group"), None)
        if group_record is None or not group_record.parent:
            raise BadInput("the state records no resource group and subscription", "delete by hand in the portal")
        subscription, group = group_record.parent, group_record.name
        self._subscription = subscription
        storage = self.mgmt("storage", subscription)
        account = self.profile.account or ""
        account_record = state.find("storage_account", account)
        try:
            props = storage.storage_accounts.get_properties(group, account)
        except ResourceNotFoundError:
            props = None
        service = None
        if props is not None:
            access = self._mgmt_access(storage, group, props)
            service = self.blob_service(access, self.key_credential(access))
        if not delete_data and service is not None:
            names = [r.name for r in ours if r.kind == "container"]
            if account_record is not None and account_record.created:
                names = sorted({c.name for c in storage.blob_containers.list(group, account)} | set(names))
            for name in names:
                if self._has_blobs(service, name):
                    raise BadInput(f"container {name!r} in account {account!r} (created by provision) still holds "
                                   "blobs", "pass --delete-data to delete them with it, or empty it first")
        auth_client = None
        for r in ours:
            if r.kind == "role_assignment":
                auth_client = auth_client or self.mgmt("authorization", subscription)
                scope = self.container_scope(subscription, group, account, r.parent or "")
                plan.write("delete", r.kind, r.name, f"on {r.parent}", self._delete_role_assignment,
                           client=auth_client, scope=scope, assignment=r.name)
            elif r.kind == "container":
                if props is not None:
                    plan.write("delete", r.kind, r.name, "container and its blobs" if delete_data else "container",
                               self._ignore_missing, op=storage.blob_containers.delete, resource_group_name=group,
                               account_name=account, container_name=r.name)
            elif r.kind == "storage_account":
                if props is not None:
                    plan.write("delete", r.kind, r.name, "storage account (every container in it)",
                               self._ignore_missing, op=storage.storage_accounts.delete, resource_group_name=group,
                               account_name=r.name)
            elif r.kind == "resource_group":
                resource = self.mgmt("resource", subscription)
                if not self._group_exists(resource, r.name):
                    plan.note("no change", r.kind, r.name, "already gone")
                else:
                    others = [x.name for x in resource.resources.list_by_resource_group(r.name)
                              if not (plan.dry_run and x.name == account)]
                    if others:
                        plan.note("no change", r.kind, r.name, f"left in place: it still holds {', '.join(others)}")
                        continue
                    poller = plan.write("delete", r.kind, r.name, "resource group (empty)",
                                        resource.resource_groups.begin_delete, resource_group_name=r.name)
                    if poller is not None:
                        poller.result()
            if not plan.dry_run:
                state.forget(r.kind, r.name)
                save()

    @staticmethod
    def _group_exists(resource: Any, group: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            resource.resource_groups.get(group)
        except ResourceNotFoundError:
            return False
        return True

    @staticmethod
    def _ignore_missing(op: Callable[..., Any], **kwargs: Any) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            op(**kwargs)
        except ResourceNotFoundError:
            pass

    # ---- data -------------------------------------------------------------------------------------------------
    def objects(self, state: State, bucket: str, write: bool) -> Any:
        """A `BlobObjects` store for container ``bucket``: the grant's SAS or key when it can do the job (reads;
        writes only with a ``full`` grant), else the admin credential (key1 / the connection string's key)."""
        grant = state.grant
        access = self._stored_access(state)
        credential: Any = None
        if grant is not None and (not write or grant.access == Access.full):
            if isinstance(grant.auth, SasToken):
                credential = grant.auth.token
            elif isinstance(grant.auth, KeyPair):
                credential = {"account_name": grant.auth.access_key, "account_key": grant.auth.secret_key}
        if credential is None:
            credential = self.key_credential(access)
        return BlobObjects(self.blob_service(access, credential, pool=64).get_container_client(bucket), bucket)

    # ---- verify -----------------------------------------------------------------------------------------------
    def verify(self, state: State) -> list[VerifyRow]:
        """Probe the stored SAS or account key against its grant, with real requests.

        With the admin credential (key1 / the connection string's key) it puts one probe blob in each container and
        makes a temporary container ``provision-verify-<hex>`` standing for "another container"; in the sandbox it
        also puts one in the second account. All are removed afterwards.

        Returns:
            One row per probe. SAS, on each container: ListBlobs, GetBlob, GetContainerProperties (allow);
            PutBlob, DeleteBlob, SetContainerMetadata (allow only for ``full``); SetContainerAcl (deny: no SAS can
            change access policies). Then: ListContainers (deny: ``srt=co`` has no service level);
            CreateContainer and DeleteContainer (allow only for ``full``: an account SAS with ``c``/``d`` on
            ``srt=c`` can); ListBlobs/GetBlob on another container (allow: an account SAS covers every container
            of the account, which is why it should live in an account of its own); PutBlob there (``full`` only);
            GetBlob/ListBlobs in another account (deny; sandbox only). Account key: all of these allowed in the
            account (it is the account's root credential), the other account denied.

        Raises:
            BadInput: the grant has no credential to probe (``--keyless``).
            CloudRefused: the admin credential could not set up the probes.
        """
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

        grant = state.grant
        if grant is None or not isinstance(grant.auth, (SasToken, KeyPair)):
            raise BadInput("this grant has no SAS or key to probe (--keyless: RBAC for a managed identity)",
                           "verify from the VM that carries the identity")
        access = self._stored_access(state)
        admin = self.blob_service(access, self.key_credential(access))
        if isinstance(grant.auth, SasToken):
            user = self.blob_service(access, grant.auth.token)
            key_mode, full = False, grant.access == Access.full
        else:
            user = self.blob_service(access, {"account_name": grant.auth.access_key,
                                              "account_key": grant.auth.secret_key})
            key_mode, full = True, True
        token = uuid.uuid4().hex[:10]
        probe = f".provision-verify/{token}"
        other = f"provision-verify-{token}"
        made = f"provision-verify-{token}-new"
        rows: list[VerifyRow] = []

        def attempt(operation: str, target: str, allowed: bool, call: Callable[..., Any], **kwargs: Any) -> Any:
            result = None
            try:
                result = call(**kwargs)
                if hasattr(result, "by_page"):  # a paged listing: fetch its first page only
                    result = list(next(result.by_page(), []))
                actual = "allow"
            except HttpResponseError as exc:
                code = _code(exc)
                actual = "deny" if code in _DENIED or _status(exc) == 403 else f"error: {code or _status(exc)}"
            rows.append(VerifyRow(operation=operation, target=target, expected="allow" if allowed else "deny",
                                  actual=actual))
            return result

        other_service = None
        try:
            admin.create_container(other)
            admin.get_container_client(other).upload_blob(probe, b"provision verify", overwrite=True)
            for container in grant.buckets:
                theirs = admin.get_container_client(container)
                theirs.upload_blob(probe, b"provision verify", overwrite=True)
                mine = user.get_container_client(container)
                attempt("ListBlobs", container, True, mine.list_blobs, results_per_page=1)
                attempt("GetBlob", f"{container}/{probe}", True,
                        lambda c=mine: c.download_blob(probe).readall())
                attempt("GetContainerProperties", container, True, mine.get_container_properties)
                attempt("PutBlob", f"{container}/{probe}.w", full, mine.upload_blob, name=f"{probe}.w", data=b"x",
                        overwrite=True)
                metadata = theirs.get_container_properties().metadata
                attempt("SetContainerMetadata", f"{container} (unchanged values)", full, mine.set_container_metadata,
                        metadata=metadata)
                acl = theirs.get_container_access_policy()
                identifiers = {i.id: i.access_policy for i in acl.get("signed_identifiers") or []}
                attempt("SetContainerAcl", f"{container} (unchanged values)", key_mode,
                        mine.set_container_access_policy, signed_identifiers=identifiers,
                        public_access=acl.get("public_access"))
                attempt("DeleteBlob", f"{container}/{probe}", full, mine.delete_blob, blob=probe)
            attempt("ListContainers", "(account)", key_mode, user.list_containers, results_per_page=1)
            attempt("CreateContainer", made, full, user.create_container, name=made)
            attempt("DeleteContainer", made, full, user.delete_container, container=made)
            scope = "an account SAS covers every container of the account" if not key_mode else "account key"
            attempt("ListBlobs", f"{other} (another container: {scope})", True,
                    user.get_container_client(other).list_blobs, results_per_page=1)
            attempt("GetBlob", f"{other}/{probe} (another container)", True,
                    lambda: user.get_container_client(other).download_blob(probe).readall())
            attempt("PutBlob", f"{other}/{probe}.w (another container)", full,
                    user.get_container_client(other).upload_blob, name=f"{probe}.w", data=b"x", overwrite=True)
            if access.other is not None:
                name, key, url = access.other
                other_access = AccountAccess(name=name, blob_url=url.rstrip("/"), verify=access.verify,
                                             keys=lambda: {"key1": key})
                other_service = self.blob_service(other_access, self.key_credential(other_access))
                other_service.create_container(other)
                other_service.get_container_client(other).upload_blob(probe, b"provision verify", overwrite=True)
                user_other = self.blob_service(other_access, grant.auth.token if not key_mode else {
                    "account_name": name, "account_key": grant.auth.secret_key})  # type: ignore[union-attr]
                attempt("GetBlob", f"{name}/{other}/{probe} (another account)", False,
                        lambda: user_other.get_container_client(other).download_blob(probe).readall())
                attempt("ListBlobs", f"{name}/{other} (another account)", False,
                        user_other.get_container_client(other).list_blobs, results_per_page=1)
        except AzureError as exc:
            raise CloudRefused(f"verify could not set up its probes: {_one_line(exc)}",
                               "check the admin credential (key1 / the connection string)") from None
        finally:
            problems = []
            for service, names in ((admin, [other, made]), (other_service, [other])):
                for name in names if service is not None else []:
                    try:
                        service.delete_container(name)
                    except ResourceNotFoundError:
                        pass
                    except AzureError as exc:
                        problems.append(f"{name}: {_one_line(exc)}")
            for container in grant.buckets:
                for blob in (probe, f"{probe}.w"):
                    try:
                        admin.get_container_client(container).delete_blob(blob)
                    except ResourceNotFoundError:
                        pass
                    except AzureError as exc:
                        problems.append(f"{container}/{blob}: {_one_line(exc)}")
            if problems:
                raise ProvisionError(f"verify could not remove its probes: {problems[0]}",
                                     f"delete containers {other}* and blobs {probe}* by hand")
        return rows


def _cs_value(connection_string: str, name: str) -> str | None:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


# ---- objects ------------------------------------------------------------------------------------------------------
class BlobObjects:
    """`provision.objects.ObjectStore` over one azure-storage-blob ContainerClient.

    Every method raises `provision.errors.CloudRefused` (operation, container, key, Azure's message) for a
    refused request or an unreachable endpoint, after azure-core's own retries.

    ``ObjectInfo.etag`` is the blob's Content-MD5 in hex (what `BlobTransfer.checksum` computes for a local file),
    or the service ETag when the blob has no Content-MD5.
    """

    url_scheme = "azure"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @staticmethod
    def _info(name: str, props: Any) -> Any:
        from provision.objects import ObjectInfo

        md5 = props.content_settings.content_md5 if props.content_settings else None
        etag = bytes(md5).hex() if md5 else str(props.etag or "").strip('"')
        return ObjectInfo(name, int(props.size or 0), etag)

    @refusing("Azure Blob", "ListBlobs", _azure_errors)
    def list(self, prefix: str = "") -> Iterator[Any]:
        """Blobs whose name starts with ``prefix``, in name order, one page (≤ 5,000) at a time."""
        for props in self.client.list_blobs(name_starts_with=prefix or None):
            yield self._info(props.name, props)

    @refusing("Azure Blob", "GetBlobProperties", _azure_errors)
    def head(self, key: str) -> Any:
        """The blob's size and checksum, or None when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self.client.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return self._info(key, props)

    @refusing("Azure Blob", "GetBlob", _azure_errors)
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (b"" past the end)."""
        if length <= 0:
            return b""
        from azure.core.exceptions import HttpResponseError

        try:
            return self.client.get_blob_client(key).download_blob(offset=start, length=length).readall()
        except HttpResponseError as exc:
            if _code(exc) == "InvalidRange":  # empty blob, or start past the end
                return b""
            raise

    @refusing("Azure Blob", "GetBlob", _azure_errors)
    def read(self, key: str) -> bytes:
        """The whole blob."""
        return self.client.get_blob_client(key).download_blob().readall()

    @refusing("Azure Blob", "PutBlob", _azure_errors)
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace ``key`` with ``data`` (Content-MD5 set)."""
        from azure.storage.blob import ContentSettings

        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        self.client.upload_blob(key, data, overwrite=True, content_settings=ContentSettings(
            content_type=content_type or mimetypes.guess_type(key)[0], content_md5=bytearray(md5)))

    @refusing("Azure Blob", "PutBlob", _azure_errors)
    def put_file(self, key: str, path: Any) -> None:
        """Upload a local file (Content-MD5 set; blocks of the SDK's size, 4 in parallel, above its threshold)."""
        md5 = file_md5(Path(path))
        with open(path, "rb") as fh:
            self.client.upload_blob(key, fh, length=os.fstat(fh.fileno()).st_size, overwrite=True,
                                    content_settings=_content_settings(key, md5), max_concurrency=4)

    def transfer(self, concurrency: int) -> BlobTransfer:
        """The `BlobTransfer` for this container (``concurrency`` parallel requests)."""
        return BlobTransfer(self.client, concurrency)


class BlobTransfer:
    """`provision.transfer.Transfer` into one container: every blob gets its Content-MD5 set on upload, so the
    listing's etag (`BlobObjects`) equals `checksum` (the hex MD5 of the file) for single-put and block uploads
    alike. Files over `SINGLE_PUT_SIZE` go in `BLOCK_SIZE` blocks, up to 4 in parallel; retries are azure-core's.

    Args:
        client: a ContainerClient with write access.
        concurrency: files uploaded in parallel (≥ 1).
    """

    checksum_kind = "md5"

    def __init__(self, client: Any, concurrency: int) -> None:
        from azure.core.exceptions import AzureError

        self.client = client
        self.concurrency = max(1, concurrency)
        self.cloud_errors: tuple[type[BaseException], ...] = (AzureError,)

    def checksum(self, path: Path, size: int) -> str:
        """The hex MD5 of ``path`` (what `BlobObjects.list` reports once `upload` set it as Content-MD5)."""
        return file_md5(path).hex()

    def upload(self, jobs: Iterable[Any], on_bytes: Callable[[int], None],
               on_done: Callable[[Any, BaseException | None, str | None], None]) -> None:
        """Upload every job in parallel with its Content-MD5 (see `provision.transfer.Transfer.upload`)."""
        from provision.transfer import run_bounded

        def put(job: Any) -> None:
            sent = [0]

            def progress(current: int, total: int | None) -> None:
                delta = current - sent[0]
                sent[0] = current
                if delta:
                    on_bytes(delta)

            try:
                md5 = file_md5(job.path)
                with open(job.path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    self.client.upload_blob(job.key, fh, length=size, overwrite=True,
                                            content_settings=_content_settings(job.key, md5),
                                            max_concurrency=4 if size > SINGLE_PUT_SIZE else 1,
                                            progress_hook=progress)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported per file
                if sent[0]:
                    on_bytes(-sent[0])
                on_done(job, exc, None)
            else:
                on_done(job, None, md5.hex())

        run_bounded(jobs, put, self.concurrency, "provision-blob")
