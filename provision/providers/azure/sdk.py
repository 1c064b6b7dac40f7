"""The one seam for Azure SDK clients: the admin credential, the management clients, the data-plane
BlobServiceClient, which account's data plane `provision` reaches (the sandbox's Azurite account, a connection
string's account, or an account found through Resource Manager), the retry budget, and the SDK's error types with
their translation to one line.

Every client `provision azure` makes comes from `AzureSdk.mgmt` or `AzureSdk.blob_service`. Management clients
point at ``$PROVISION_AZURE_ARM_ENDPOINT`` (default https://management.azure.com; sovereign clouds and the tests'
fake ARM server set it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from provision.errors import BadInput, CloudRefused, one_line
from provision.providers.azure.options import GUID, AzureOptions
from provision.providers.base import sdk_attempts

ARM_ENDPOINT_ENV = "PROVISION_AZURE_ARM_ENDPOINT"
"""Environment variable naming the Azure Resource Manager endpoint (sovereign clouds, tests)."""
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
"""Environment variable: total attempts per SDK request, the first included (unset: `DEFAULT_RETRIES` retries)."""
DEFAULT_RETRIES = 3
"""azure-core retries per request when `SDK_ATTEMPTS_ENV` is unset (exponential back-off on 408, 429, 5xx and
connection errors: https://learn.microsoft.com/azure/developer/python/sdk/fundamentals/retry-policy)."""
PUBLIC_BLOB_SUFFIX = ".blob.core.windows.net"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
MiB = 1024 * 1024
SINGLE_PUT_SIZE = 8 * MiB
"""Blobs up to this size (bytes) are uploaded in one Put Blob; larger ones in blocks of `BLOCK_SIZE`."""
BLOCK_SIZE = 4 * MiB
_ZERO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


# ---- the SDK's errors ---------------------------------------------------------------------------------------------
def azure_errors() -> tuple[type[BaseException], ...]:
    """Every azure-core error a request can end with (``AzureError``: answers, transport, authentication)."""
    from azure.core.exceptions import AzureError

    return (AzureError,)


def answered_errors() -> tuple[type[BaseException], ...]:
    """azure-core's "the service answered with an error" type (``HttpResponseError``): a create refused this way
    did not happen (`provision.ledger.Plan.create` forgets its record)."""
    from azure.core.exceptions import HttpResponseError

    return (HttpResponseError,)


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """azure-core's "no answer at all" errors: ``ServiceRequestError`` (connection refused, DNS, TLS) and
    ``ServiceResponseError`` (the connection dropped or timed out before an answer)."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return (ServiceRequestError, ServiceResponseError)


def error_code(exc: BaseException) -> str:
    """The service's error code of an azure-core exception (``AuthorizationPermissionMismatch`` ...), or ''."""
    code = getattr(exc, "error_code", None)
    if code is None and getattr(exc, "error", None) is not None:
        code = getattr(exc.error, "code", None)  # type: ignore[attr-defined]
    return str(getattr(code, "value", code) or "")


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an azure-core exception, or None (no answer)."""
    return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)


def describe(exc: BaseException) -> str:
    """One line for an azure-core exception: ``<code>: <first line of the message>`` (no traceback, no secret)."""
    first = one_line(exc)
    code = error_code(exc)
    return f"{code}: {first}" if code and code not in first else first


def plain(value: Any) -> Any:
    """The plain value of an SDK enum member (``PublicAccess.NONE`` → ``"None"``); other values unchanged."""
    return getattr(value, "value", value)


@contextlib.contextmanager
def refused_as(doing: str) -> Iterator[None]:
    """Turn Azure's errors (refusals, authentication, transport) inside the block into one-line `CloudRefused`."""
    try:
        yield
    except azure_errors() as exc:
        raise CloudRefused(f"Azure refused {doing}: {describe(exc)}",
                           "check the Azure credentials (az login, managed identity) and that the account "
                           "exists") from None


def retries() -> int:
    """azure-core's ``retry_total`` for every client: `SDK_ATTEMPTS_ENV` minus one, else `DEFAULT_RETRIES`.

    Raises:
        BadInput: the variable is set but is not a whole number ≥ 1.
    """
    attempts = sdk_attempts()
    return DEFAULT_RETRIES if attempts is None else attempts - 1


# ---- one account's data plane -------------------------------------------------------------------------------------
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
        other: the sandbox's second account (name, key1, blob URL), for "another account" probes; None elsewhere.
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


def key_credential(access: AccountAccess, which: str = "key1") -> dict[str, str]:
    """The shared-key credential of ``access``'s account (``key1``: the admin credential)."""
    return {"account_name": access.name, "account_key": access.key(which)}


@dataclass(frozen=True)
class ConnectionString:
    """A connection string as azure-storage-blob parsed it: account name, key (None when absent), blob URL."""

    name: str
    key: str | None
    url: str


def parse_connection_string(text: str, account: str | None) -> ConnectionString:
    """Read account, key and blob endpoint of a connection string with azure-storage-blob's own parser.

    Args:
        text: the connection string.
        account: ``--account``, which must name the same account when given.

    Raises:
        BadInput: malformed, no account name, holds a SAS instead of the key, an http endpoint (an https-only SAS
            cannot be used over it), another account than ``account``, an invalid account name.
    """
    from azure.storage.blob import BlobServiceClient

    from provision.names import check_storage_account

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
    if account and account != name:
        raise BadInput(f"--account {account!r} differs from the connection string's account {name!r}",
                       "drop --account, or pass that account's connection string")
    check_storage_account(name)
    return ConnectionString(name, key, url)


# ---- the seam -----------------------------------------------------------------------------------------------------
class AzureSdk:
    """Makes every Azure client of one provider object; no I/O until a client or an account is asked for.

    Args:
        options: the Azure options (account, subscription, location).
        sandbox: ``--env sandbox``: the sandbox's Azurite account, data plane only.
        connection: the parsed connection string (data-plane-only mode), or None.
    """

    def __init__(self, options: AzureOptions, sandbox: bool, connection: ConnectionString | None) -> None:
        self.options = options
        self.sandbox = sandbox
        self.connection = connection
        self.subscription_id: str | None = None
        self._credential: Any = None
        self._sandbox: Any = None
        self._access: AccountAccess | None = None

    @property
    def data_plane(self) -> bool:
        """True in data-plane-only mode (sandbox or connection string): no management call at all."""
        return self.sandbox or self.connection is not None

    # ---- clients --------------------------------------------------------------------------------------------
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
        `arm_endpoint` with the matching token scope (``<endpoint>/.default``), retrying `retries` times."""
        base = self.arm_endpoint()
        kwargs: dict[str, Any] = {"base_url": base, "credential_scopes": [f"{base}/.default"],
                                  "retry_total": retries()}
        if kind == "resource":
            from azure.mgmt.resource.resources import ResourceManagementClient

            return ResourceManagementClient(self.credential(), subscription, **kwargs)
        if kind == "storage":
            from azure.mgmt.storage import StorageManagementClient

            return StorageManagementClient(self.credential(), subscription, **kwargs)
        from azure.mgmt.authorization import AuthorizationManagementClient

        return AuthorizationManagementClient(self.credential(), subscription, **kwargs)

    @staticmethod
    def blob_service(access: AccountAccess, credential: Any, pool: int = 10) -> Any:
        """A BlobServiceClient for ``access``'s account with ``credential`` (a SAS string, or
        ``{"account_name", "account_key"}``): the SDK's exponential retry (`retries`, 1 s base), blobs over
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
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries(),
                                          random_jitter_range=1),
            max_single_put_size=SINGLE_PUT_SIZE, max_block_size=BLOCK_SIZE, connection_timeout=10, read_timeout=60,
            transport=RequestsTransport(session=session, session_owner=True, connection_verify=access.verify))

    def subscription(self) -> str:
        """The subscription id: ``--subscription``, ``AZURE_SUBSCRIPTION_ID``, or the only one the credential sees.

        Raises:
            BadInput: none or several are visible and none was given.
        """
        if self.subscription_id:
            return self.subscription_id
        chosen = self.options.subscription or os.environ.get("AZURE_SUBSCRIPTION_ID")
        if chosen:
            if not GUID.match(chosen):
                raise BadInput(f"invalid AZURE_SUBSCRIPTION_ID {chosen!r}: a subscription id is a GUID",
                               "fix the variable or pass --subscription")
        else:
            from azure.core.rest import HttpRequest

            # azure-mgmt-resource 26 no longer ships SubscriptionClient: one GET through the same client pipeline
            client = self.mgmt("resource", _ZERO_SUBSCRIPTION)
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
        self.subscription_id = chosen.lower()
        return self.subscription_id

    # ---- which account's data plane -------------------------------------------------------------------------
    def sandbox_endpoint(self) -> Any:
        """The running sandbox's Azure endpoint. Raises BadInput when none runs or it has no Azurite."""
        if self._sandbox is None:
            from provision.sandbox import require_info

            self._sandbox = require_info().require_azure()
        return self._sandbox

    def data_access(self) -> AccountAccess:
        """The data plane of the account in data-plane-only mode (sandbox or connection string); no cloud call.

        Raises:
            BadInput: ``--account`` names another account than the sandbox's; the sandbox is not running.
        """
        if self._access is not None:
            return self._access
        if self.sandbox:
            endpoint = self.sandbox_endpoint()
            acct = endpoint.account
            if self.options.account and self.options.account != acct.name:
                raise BadInput(f"--account {self.options.account!r} is not the sandbox's account {acct.name!r}",
                               "drop --account with --env sandbox")
            self._access = AccountAccess(
                name=acct.name, blob_url=endpoint.account_url().rstrip("/"), verify=endpoint.ca_file,
                keys=lambda: {"key1": acct.key1, "key2": acct.key2}, signing_key_name="key2",
                other=(endpoint.other.name, endpoint.other.key1, endpoint.account_url(endpoint.other.name)))
            return self._access
        assert self.connection is not None
        name, key, url = self.connection.name, self.connection.key, self.connection.url

        def keys() -> dict[str, str]:
            if not key:
                raise BadInput(f"the account key of {name!r} is not known here (the state keeps the connection "
                               "string without it)", "set AZURE_STORAGE_CONNECTION_STRING to the account's "
                               "connection string, or pass --connection-string")
            return {"key1": key, "key2": key}

        self._access = AccountAccess(name=name, blob_url=url, verify=True, keys=keys,
                                     signing_key_name="the connection string's key")
        return self._access

    def mgmt_access(self, storage: Any, group: str, account: Any) -> AccountAccess:
        """The data plane of ``--account`` found through Resource Manager: its blob endpoint from ``account`` (a
        StorageAccount model, or None: the public default), its keys from ``list_keys`` (lazily)."""
        name = self.options.account or ""

        def keys() -> dict[str, str]:
            with refused_as(f"listing the keys of storage account {name}"):
                listed = storage.storage_accounts.list_keys(group, name).keys_property or []
            return {k.key_name: k.value for k in listed}

        endpoints = account.properties.primary_endpoints if account is not None and account.properties else None
        url = (endpoints.blob if endpoints and endpoints.blob else f"https://{name}{PUBLIC_BLOB_SUFFIX}").rstrip("/")
        return AccountAccess(name=name, blob_url=url, verify=True, keys=keys, signing_key_name="key2",
                             location=getattr(account, "location", None) or self.options.location)

    def stored_access(self, state: Any) -> AccountAccess:
        """The account's data plane for a later command (verify, objects, destroy): data-plane mode as in
        `data_access`; management mode from the state's records (subscription, resource group) + the account.

        Raises:
            BadInput: the state records no storage account. CloudRefused: Azure refused reading it.
        """
        if self.data_plane:
            return self.data_access()
        if self._access is not None:
            return self._access
        account = self.options.account or ""
        record = state.find("storage_account", account)
        group = state.find("resource_group", record.parent) if record and record.parent else None
        if record is None or group is None or not group.parent:
            raise BadInput(f"environment {state.env!r} records no storage account", "run `provision azure` first")
        self.subscription_id = group.parent
        with refused_as(f"reading storage account {account}"):
            storage = self.mgmt("storage", group.parent)
            props = storage.storage_accounts.get_properties(group.name, account)
        self._access = self.mgmt_access(storage, group.name, props)
        return self._access
