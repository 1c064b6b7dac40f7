"""The Azure-specific fields of a profile and their validation: pure (no SDK import, no I/O).

Naming rules are `provision.names`'; the choice between the management plane and the data plane only, and the
option combinations each credential mode accepts, are here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict

from provision.errors import BadInput
from provision.models import Access
from provision.names import (
    check_principal_id,
    check_resource_group,
    check_storage_account,
    parse_duration,
    parse_expiry,
)
from provision.providers.azure.sas import SasExpiry

DEFAULT_LOCATION = "westeurope"
DEFAULT_SAS_EXPIRY = "30d"
DEFAULT_RENEW_BEFORE = "7d"
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
"""The environment variable azure-storage-blob's tools read a connection string from."""
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
"""A subscription id or a principal id (Entra ID object id)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Mode = Literal["sas", "account_key", "keyless"]


@dataclass(frozen=True)
class Credential:
    """The credential choice of a profile, resolved (`AzureOptions.credential`).

    Attributes:
        mode: ``sas`` (default) | ``account_key`` | ``keyless``.
        access: the grant's access: ``full`` with ``--account-key`` (the key is), else the profile's.
        principal_id: ``--keyless``'s principal id, lower-cased; None otherwise.
        expiry: the parsed ``--sas-expiry`` (default `DEFAULT_SAS_EXPIRY`), or None when it is in the past.
        expiry_error: why ``expiry`` is None (an apply that must issue a SAS refuses it; verify and destroy of an
            existing grant still work), else None.
        renew_before: ``--renew-before`` (default `DEFAULT_RENEW_BEFORE`), positive.
    """

    mode: Mode
    access: Access
    principal_id: str | None
    expiry: SasExpiry | None
    expiry_error: BadInput | None
    renew_before: timedelta


class AzureFields(BaseModel):
    """The profile fields only ``provision azure`` takes (`provision.profiles.Profile` is composed of these and
    the other providers' fields).

    Attributes:
        account: storage account name (management mode; must match a connection string's).
        resource_group: resource group (default ``provision-<account>``).
        location: location of a created group and account (default `DEFAULT_LOCATION`).
        subscription: subscription id, a GUID (default ``AZURE_SUBSCRIPTION_ID``, else the only one visible).
        connection_string: data-plane-only mode for an existing account.
        sas_expiry: SAS lifetime ``Nd`` / ``Nh`` or an ISO-8601 UTC instant.
        renew_before: renew the stored SAS when less than this remains (``Nd`` / ``Nh``).
        account_key: hand out the account name + key1 instead of a SAS.
        keyless: RBAC for ``principal_id``, no secret.
        principal_id: the managed identity's principal (object) id.
        harden: change an adopted account's / container's insecure settings instead of only reporting them.
        shared_account: accept that the account SAS also reaches containers outside the grant.
    """

    model_config = ConfigDict(extra="forbid")

    account: str | None = None
    resource_group: str | None = None
    location: str | None = None
    subscription: str | None = None
    connection_string: str | None = None
    sas_expiry: str | None = None
    renew_before: str | None = None
    account_key: bool = False
    keyless: bool = False
    principal_id: str | None = None
    harden: bool = False
    shared_account: bool = False


class AzureOptions(AzureFields):
    """The options only ``provision azure`` takes (`AzureFields`), with their rules and defaults."""

    @classmethod
    def of(cls, profile: BaseModel) -> AzureOptions:
        """The Azure fields of a `provision.profiles.Profile` (a copy: the profile is never changed)."""
        return cls.model_validate(profile.model_dump(include=set(cls.model_fields)))

    @property
    def mode(self) -> Mode:
        """``sas`` | ``account_key`` | ``keyless``."""
        return "account_key" if self.account_key else "keyless" if self.keyless else "sas"

    @property
    def group(self) -> str:
        """``resource_group``, or ``provision-<account>``."""
        return self.resource_group or f"provision-{self.account}"

    def credential(self, access: Access, access_given: bool, now: datetime) -> Credential:
        """Check the credential options and resolve them.

        Args:
            access: the profile's access level.
            access_given: whether it was given explicitly (``--readonly``), not defaulted.
            now: the current time (aware UTC), for ``--sas-expiry``.

        Returns:
            The `Credential`.

        Raises:
            BadInput: ``--account-key`` with ``--keyless`` or an explicit ``--readonly``; ``--keyless`` without a
                principal id (a GUID), a principal id without ``--keyless``; ``--sas-expiry``/``--renew-before``
                without a SAS; an unparseable, zone-less or zero ``--sas-expiry``; a ``--renew-before`` that is
                not ``Nd``/``Nh`` or not positive; an invalid ``--account`` name.
        """
        if self.account_key and self.keyless:
            raise BadInput("--account-key and --keyless are mutually exclusive", "a grant has exactly one credential")
        if self.account_key:
            if access_given and access == Access.readonly:
                raise BadInput("--account-key cannot be read-only: the account key is full access to every "
                               "container of the account", "drop --readonly, or drop --account-key for a read-only "
                               "SAS (the default)")
            access = Access.full
        principal = None
        if self.keyless:
            if not self.principal_id:
                raise BadInput("--keyless needs the managed identity's principal id", "pass --keyless PRINCIPAL_ID")
            principal = check_principal_id(self.principal_id)
        elif self.principal_id:
            raise BadInput("a principal id is only used with --keyless", "pass --keyless PRINCIPAL_ID or drop it")
        if self.mode != "sas":
            other = "--account-key" if self.account_key else "--keyless"
            for name, value in (("--sas-expiry", self.sas_expiry), ("--renew-before", self.renew_before)):
                if value is not None:
                    raise BadInput(f"{name} applies to a SAS, not to {other}", f"drop {name}")
        text = self.sas_expiry or DEFAULT_SAS_EXPIRY
        parse_expiry(text, _EPOCH, "--sas-expiry")  # syntax, zone, zero: refused whatever the command
        expiry, expiry_error = None, None
        try:
            expiry = SasExpiry.parse(text, now)
        except BadInput as exc:  # in the past: refused by apply, but verify/destroy of an old grant still work
            expiry_error = exc
        renew_before = parse_duration(self.renew_before or DEFAULT_RENEW_BEFORE, "--renew-before")
        if renew_before <= timedelta(0):
            raise BadInput(f"invalid --renew-before {self.renew_before!r}: it must be positive", "pass e.g. 7d")
        if self.account:
            check_storage_account(self.account)
        return Credential(self.mode, access, principal, expiry, expiry_error, renew_before)

    def check_sandbox(self, sandbox: bool) -> None:
        """Raises BadInput: a connection string with ``--env sandbox`` (it uses the sandbox's account)."""
        if sandbox and self.connection_string:
            raise BadInput("--connection-string does not apply to --env sandbox (it uses the sandbox's account)",
                           "drop --connection-string, or use another --env")

    def check_plane(self, sandbox: bool, data_plane: bool) -> None:
        """Check the options against the plane the run uses.

        Args:
            sandbox: ``--env sandbox``.
            data_plane: True in data-plane-only mode (the sandbox, or a connection string).

        Raises:
            BadInput: a management-only option (``--resource-group``, ``--location``, ``--subscription``,
                ``--harden``, ``--keyless``) in data-plane mode; no ``--account``, an invalid resource group or a
                subscription that is not a GUID in management mode.
        """
        if data_plane:
            where = "--env sandbox" if sandbox else ("data-plane-only mode (--connection-string or "
                                                     f"{CONNECTION_STRING_ENV})")
            given = [flag for flag, value in (("--resource-group", self.resource_group), ("--location", self.location),
                                              ("--subscription", self.subscription), ("--harden", self.harden),
                                              ("--keyless", self.keyless)) if value]
            if given:
                raise BadInput(f"{given[0]} needs the management plane, which {where} does not use",
                               "drop it, or pass --account without a connection string for the management plane")
            return
        if not self.account:
            raise BadInput("no storage account given", "pass --account NAME (3–24 a-z0-9), or "
                           "--connection-string for an existing account, or --env sandbox")
        check_resource_group(self.group)
        check_location(self.location)
        if self.subscription and not GUID.match(self.subscription):
            raise BadInput(f"invalid --subscription {self.subscription!r}: a subscription id is a GUID",
                           "find it with `az account list --query [].id`")


LOCATION = re.compile(r"^[a-z0-9]{2,40}$")
"""An Azure region's programmatic name (``westeurope``, ``eastus2``): lowercase letters and digits, as
``az account list-locations --query [].name`` prints them (https://learn.microsoft.com/azure/reliability/
regions-list)."""


def check_location(location: str | None) -> None:
    """Check ``--location`` before any call (None: the default).

    Raises:
        BadInput: not a region's programmatic name (`LOCATION`), e.g. ``West Europe``.
    """
    if location is not None and not LOCATION.match(location):
        raise BadInput(f"invalid --location {location!r}: an Azure region name is lowercase letters and digits",
                       "pass e.g. westeurope (see `az account list-locations --query [].name`)")


# ---- connection strings (text only; azure-storage-blob parses them in `sdk`) -------------------------------------
def cs_value(connection_string: str, name: str) -> str | None:
    """The value of ``name`` (case-insensitive) in a connection string, or None."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def without_key(connection_string: str) -> str:
    """A connection string with its ``AccountKey`` (and any ``SharedAccessSignature``) dropped: safe to store."""
    parts = [p for p in connection_string.split(";") if p.strip()
             and not p.strip().lower().startswith(("accountkey=", "sharedaccesssignature="))]
    return ";".join(parts) + ";"


def choose_connection_string(given: str | None, from_env: str | None) -> str | None:
    """The connection string a non-sandbox run uses: ``--connection-string``, else `CONNECTION_STRING_ENV`'s.

    A given string without an ``AccountKey`` (one stored in state by an earlier run) is replaced by the
    environment's when that names the same account: the key comes from the environment.

    Returns:
        The string (it may hold the account key), or None (management mode).
    """
    if not (given or from_env):
        return None
    if given and "accountkey=" not in given.lower() and from_env \
            and cs_value(from_env, "AccountName") == cs_value(given, "AccountName"):
        return from_env
    return given or from_env
