"""Destroy: what `provision` created, one resource at a time (`provision.providers.base.BaseProvider.destroy`
drives the order and the state). Data-plane mode deletes only containers; management mode also role
assignments, the storage account and the resource group — a group only when nothing else is left in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provision.errors import BadInput
from provision.ledger import Plan
from provision.models import Access, KeyPair, Resource, SasToken
from provision.providers.azure.containers import has_blobs
from provision.providers.azure.credentials import container_scope, delete_role_assignment
from provision.providers.azure.sas import when
from provision.providers.azure.sdk import key_credential

if TYPE_CHECKING:
    from provision.providers.azure.provider import AzureProvider


@dataclass
class Target:
    """Where the resources of one environment live, read once per destroy.

    Attributes:
        service: a BlobServiceClient with the strongest credential known, or None (management: the account is
            gone).
        subscription, group, storage: management mode: from the state's resource group record, and a storage
            management client; None in data-plane mode.
        exists: management mode: whether the storage account still exists.
    """

    service: Any
    subscription: str | None = None
    group: str | None = None
    storage: Any = None
    exists: bool = True


def target(az: AzureProvider, state: Any) -> Target:
    """The `Target` of ``state`` (cached on the provider for the rest of the destroy).

    Raises:
        BadInput: management mode and the state records no resource group and subscription; data-plane mode and
            the account key is unknown while the grant is no full SAS.
    """
    if az.destroy_target is not None:
        return az.destroy_target
    sdk = az.sdk
    if sdk.data_plane:
        found = Target(service=admin_service(az, state, sdk.data_access()))
    else:
        from azure.core.exceptions import ResourceNotFoundError

        group = next((r for r in state.resources if r.kind == "resource_group"), None)
        if group is None or not group.parent:
            raise BadInput("the state records no resource group and subscription", "delete by hand in the portal")
        sdk.subscription_id = group.parent
        storage = sdk.mgmt("storage", group.parent)
        try:
            props = storage.storage_accounts.get_properties(group.name, az.options.account or "")
        except ResourceNotFoundError:
            props = None
        service = None
        if props is not None:
            access = sdk.mgmt_access(storage, group.name, props)
            service = sdk.blob_service(access, key_credential(access))
        found = Target(service=service, subscription=group.parent, group=group.name, storage=storage,
                       exists=props is not None)
    az.destroy_target = found
    return found


def admin_service(az: AzureProvider, state: Any, access: Any) -> Any:
    """A data-plane client with the strongest credential known: the account key, else the grant's own full SAS.

    Raises:
        BadInput: the account key is not known here and the grant is no full SAS.
    """
    try:
        return az.sdk.blob_service(access, key_credential(access))
    except BadInput:
        grant = state.grant
        if grant is not None and grant.access == Access.full and isinstance(grant.auth, SasToken):
            return az.sdk.blob_service(access, grant.auth.token)  # a full account SAS may delete containers
        raise


def holds_objects(az: AzureProvider, state: Any, resource: Resource) -> bool:
    """True when the container holds a blob; for a storage account `provision` created, when any container in it
    does (deleting the account deletes them all)."""
    found = target(az, state)
    if found.service is None:
        return False
    if resource.kind == "container":
        return has_blobs(found.service, resource.name)
    names = [c.name for c in found.storage.blob_containers.list(found.group, resource.name)]
    return any(has_blobs(found.service, name) for name in sorted(names))


def delete_resource(az: AzureProvider, state: Any, r: Resource, plan: Plan, delete_data: bool) -> None:
    """Delete one created resource through ``plan``; one already gone is reported as such."""
    from azure.core.exceptions import ResourceNotFoundError

    found = target(az, state)
    if az.sdk.data_plane:
        try:
            plan.delete("container", r.name, "container and its blobs" if delete_data else "container",
                        found.service.delete_container, container=r.name)
        except ResourceNotFoundError:
            plan.note("no change", "container", r.name, "already gone")
        return
    account = az.options.account or ""
    if r.kind == "role_assignment":
        client = az.sdk.mgmt("authorization", found.subscription or "")
        plan.delete(r.kind, r.name, f"on {r.parent}", delete_role_assignment, client=client,
                    scope=container_scope(found.subscription or "", found.group or "", account, r.parent or ""),
                    assignment=r.name)
    elif r.kind in ("container", "storage_account") and not found.exists:
        plan.note("no change", r.kind, r.name, "already gone")
    elif r.kind == "container":
        plan.delete(r.kind, r.name, "container and its blobs" if delete_data else "container", ignore_missing,
                    op=found.storage.blob_containers.delete, resource_group_name=found.group, account_name=account,
                    container_name=r.name)
    elif r.kind == "storage_account":
        plan.delete(r.kind, r.name, "storage account (every container in it)", ignore_missing,
                    op=found.storage.storage_accounts.delete, resource_group_name=found.group, account_name=r.name)
    elif r.kind == "resource_group":
        resource = az.sdk.mgmt("resource", found.subscription or "")
        try:
            resource.resource_groups.get(r.name)
        except ResourceNotFoundError:
            plan.note("no change", r.kind, r.name, "already gone")
            return
        others = [x.name for x in resource.resources.list_by_resource_group(r.name) if not plan.deleted(x.name)]
        if others:
            plan.note("no change", r.kind, r.name, f"left in place: it still holds {', '.join(others)}")
            return
        poller = plan.delete(r.kind, r.name, "resource group (empty)", resource.resource_groups.begin_delete,
                             resource_group_name=r.name)
        if poller is not None:
            poller.result()


def ignore_missing(op: Any, **kwargs: Any) -> None:
    """``op(**kwargs)``; a resource already gone counts as deleted."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        op(**kwargs)
    except ResourceNotFoundError:
        pass


def credentials_left(state: Any, account_gone: bool) -> list[str]:
    """The credentials that stay valid after destroy while the account lives: the SAS until its expiry, key1."""
    auth = state.grant.auth if state.grant else None
    if account_gone:
        return []
    if isinstance(auth, SasToken):
        return [f"sas of {auth.account_name} (valid until {when(auth.expires_at)}; revoke it by rotating the key "
                "that signed it)"]
    if isinstance(auth, KeyPair):
        return [f"account key key1 of {auth.access_key} (rotate it to revoke)"]
    return []
