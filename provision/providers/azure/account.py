"""The management plane's resource group and storage account: ensure, adopt, harden; and the whole management
apply (group, account, containers, role assignments) in `ensure_management`.

Secure account settings: https://learn.microsoft.com/azure/storage/common/security-recommendations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.errors import CloudRefused
from provision.ledger import Plan
from provision.models import Resource
from provision.providers.azure.marks import account_writer, group_writer
from provision.providers.azure.options import DEFAULT_LOCATION
from provision.providers.azure.sdk import AccountAccess, plain
from provision.providers.azure.steps import create
from provision.providers.owner_marks import OwnerMark, check_adoptable
from provision.providers.owner_marks import ours as owned

if TYPE_CHECKING:
    from provision.providers.azure.provider import AzureProvider

SECURE_ACCOUNT: list[tuple[str, Any, str]] = [
    ("allow_blob_public_access", False, "blob public access off"),
    ("minimum_tls_version", "TLS1_2", "TLS 1.2 minimum"),
    ("enable_https_traffic_only", True, "HTTPS only"),
    ("allow_cross_tenant_replication", False, "no cross-tenant replication"),
]
"""Secure storage-account settings: (attribute of the account's ``properties``, wanted value, label)."""
_TLS_OK = ("TLS1_2", "TLS1_3")


def insecure_settings(account: Any) -> list[str]:
    """Labels of `SECURE_ACCOUNT` settings that ``account`` (a StorageAccount model) does not have."""
    props = account.properties
    bad = []
    for attr, wanted, label in SECURE_ACCOUNT:
        value = plain(getattr(props, attr, None) if props is not None else None)
        ok = (value in _TLS_OK) if attr == "minimum_tls_version" else value == wanted
        if not ok:
            bad.append(label)
    return bad


def ensure_management(az: AzureProvider, state: Any, plan: Plan) -> tuple[AccountAccess | None, Callable[..., None]]:
    """Resource group, storage account, containers (and role assignments for ``--keyless``).

    Returns:
        (the account's data plane, or None in a dry run when the account does not exist yet; a function that
        regenerates a key, ``regenerate(which="key1"|"key2")``, for ``--rotate``).

    Raises:
        BadInput: an ambiguous subscription. CloudRefused: the account name is taken. Azure's errors otherwise.
    """
    from provision.providers.azure.containers import (
        check_marks,
        ensure_container_mgmt,
        list_containers_mgmt,
        outside,
        read_containers_mgmt,
    )
    from provision.providers.azure.credentials import ensure_role_assignment

    sdk = az.sdk
    subscription = sdk.subscription()
    resource, storage = sdk.mgmt("resource", subscription), sdk.mgmt("storage", subscription)
    group = az.options.group
    name = az.options.account or ""
    adopt = az.profile.adopt
    # everything is read and checked before the first change: a refusal leaves no trace
    current = read_account(storage, group, name)  # a taken name is refused before any create
    group_now = read_group(resource, group)
    if group_now is not None:
        check_adoptable("resource_group", group, OwnerMark.read(group_now.tags, "tag"), state, adopt)
    if current is not None:
        check_adoptable("storage_account", name, OwnerMark.read(current.tags, "tag"), state, adopt)
    found = read_containers_mgmt(storage, group, name, az.containers, current is not None)
    check_marks(found, state, adopt)
    if current is not None:
        az.check_shared(outside(list_containers_mgmt(storage, group, name), az.containers, state), name, plan)
    ensure_resource_group(az, resource, subscription, group, group_now, state, plan)
    account = ensure_account(az, storage, group, name, current, state, plan)
    access = sdk.mgmt_access(storage, group, account) if account is not None else None
    for container in az.containers:
        ensure_container_mgmt(storage, group, name, container, found[container], state, plan)
    if az.choice.mode == "keyless":
        auth = sdk.mgmt("authorization", subscription)
        for container in az.containers:
            ensure_role_assignment(az, auth, subscription, group, name, container, state, plan)

    def regenerate(which: str) -> None:
        from azure.mgmt.storage.models import StorageAccountRegenerateKeyParameters

        storage.storage_accounts.regenerate_key(group, name, StorageAccountRegenerateKeyParameters(key_name=which))

    return access, regenerate


def read_group(client: Any, group: str) -> Any:
    """The resource group (a ResourceGroup model), or None when it does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return client.resource_groups.get(group)
    except ResourceNotFoundError:
        return None


def owner_tags(state: Any) -> dict[str, str]:
    """The tags of a resource group or account `provision` creates: ``provision:env``, ``provision:grant``,
    ``provision:state`` (`provision.providers.owner_marks`)."""
    return {"provision:env": state.env, **OwnerMark.of(state).fields("tag")}


def ensure_resource_group(az: AzureProvider, client: Any, subscription: str, group: str, current: Any, state: Any,
                          plan: Plan) -> None:
    """Create the resource group (`owner_tags`) in ``--location`` when missing (``current`` None), else adopt it
    (one carrying this state's own mark is tracked as created)."""
    from azure.mgmt.resource.resources.models import ResourceGroup

    from provision.providers.azure.containers import keep_or_adopt

    location = az.options.location or DEFAULT_LOCATION
    if current is None:
        create(plan, Resource(kind="resource_group", name=group, created=True, parent=subscription),
               f"in {location}", client.resource_groups.create_or_update, resource_group_name=group,
               parameters=ResourceGroup(location=location, tags=owner_tags(state)))
        return
    keep_or_adopt(plan, Resource(kind="resource_group", name=group, created=False, parent=subscription),
                  f"in {current.location}", OwnerMark.read(current.tags, "tag"), state, current.tags,
                  group_writer(client, group, current.location))


def read_account(client: Any, group: str, name: str) -> Any:
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
        raise CloudRefused(f"storage account name {name!r} is taken ({check.message or plain(check.reason)})",
                           "account names are global across Azure: choose another --account, or pass "
                           "--resource-group if the account is yours")
    return None


def ensure_account(az: AzureProvider, client: Any, group: str, name: str, current: Any, state: Any,
                   plan: Plan) -> Any:
    """The storage account, created with `SECURE_ACCOUNT` settings when missing; an adopted one's insecure
    settings are reported, and changed only with ``--harden`` (an account `provision` created is kept secure).

    Returns:
        The StorageAccount model (None in a dry run that would create it).
    """
    from azure.mgmt.storage.models import (
        Sku,
        StorageAccountCreateParameters,
        StorageAccountPropertiesCreateParameters,
    )

    location = az.options.location or DEFAULT_LOCATION
    if current is None:
        settings = {attr: value for attr, value, _ in SECURE_ACCOUNT}
        parameters = StorageAccountCreateParameters(
            sku=Sku(name="Standard_LRS"), kind="StorageV2", location=location, tags=owner_tags(state),
            properties=StorageAccountPropertiesCreateParameters(**settings))
        labels = ", ".join(label for _, _, label in SECURE_ACCOUNT)
        poller = create(plan, Resource(kind="storage_account", name=name, created=True, parent=group),
                        f"StorageV2, Standard_LRS, in {location}: {labels}", client.storage_accounts.begin_create,
                        resource_group_name=group, account_name=name,
                        parameters=parameters)
        return poller.result() if poller is not None else None
    from provision.providers.azure.containers import keep_or_adopt

    record = state.find("storage_account", name)
    ours = (record is not None and record.created) or owned(OwnerMark.read(current.tags, "tag"), state)
    insecure = insecure_settings(current)
    detail = f"{plain(current.kind)}, {plain(current.sku.name) if current.sku else '?'}, in {current.location}"
    keep_or_adopt(plan, Resource(kind="storage_account", name=name, created=False, parent=group), detail,
                  OwnerMark.read(current.tags, "tag"), state, current.tags, account_writer(client, group, name))
    if insecure and (az.options.harden or ours):
        from azure.mgmt.storage.models import StorageAccountPropertiesUpdateParameters, StorageAccountUpdateParameters

        fixes = {attr: value for attr, value, label in SECURE_ACCOUNT if label in insecure}
        updated = plan.update("storage_account", name, "hardened: " + ", ".join(insecure),
                              client.storage_accounts.update, resource_group_name=group, account_name=name,
                              parameters=StorageAccountUpdateParameters(
                                  properties=StorageAccountPropertiesUpdateParameters(**fixes)))
        return current if updated is None else client.storage_accounts.get_properties(group, name)
    if insecure:
        plan.note("no change", "storage_account", name, "INSECURE, not changed (pass --harden to fix): wants "
                  + ", ".join(insecure))
    return current
