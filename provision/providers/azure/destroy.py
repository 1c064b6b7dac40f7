"""Destroy: what `provision` created, one resource at a time (`provision.providers.base.BaseProvider.destroy`
drives the order and the state). Data-plane mode deletes only containers; management mode also role
assignments, the storage account and the resource group — a group only when nothing else is left in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provision.errors import BadInput
from provision.ledger import Plan
from provision.models import Access, KeyPair, Resource, SasToken
from provision.providers.azure import marks
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
        marker: reads and writes owner marks and share lists (`provision.providers.azure.marks.AzureMarks`).
    """

    service: Any
    subscription: str | None = None
    group: str | None = None
    storage: Any = None
    exists: bool = True
    marker: Any = None


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
        service = admin_service(az, state, sdk.data_access())
        found = Target(service=service, marker=marks.data_plane_marker(service))
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
                       exists=props is not None, marker=marks.mgmt_marker(
                           storage, sdk.mgmt("resource", group.parent), group.name, az.options.account or ""))
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
    if found.service is None or marks.stays(found.marker, state, resource.kind, resource.name):
        return False
    if resource.kind == "container":
        return has_blobs(found.service, resource.name)
    names = [c.name for c in found.storage.blob_containers.list(found.group, resource.name)]
    return any(has_blobs(found.service, name) for name in sorted(names))


def delete_resource(az: AzureProvider, state: Any, r: Resource, plan: Plan, delete_data: bool) -> None:
    """Delete one created resource through ``plan``; one already gone is reported as such. A container, account
    or group another state shares (``--adopt``) is handed over to it instead (`marks.hand_over`)."""
    from azure.core.exceptions import ResourceNotFoundError

    found = target(az, state)
    if not az.sdk.data_plane and not az.sas_revoked:
        az.sas_revoked = revoke_sas(az, state, plan)
    if r.kind in marks.MARKED_KINDS and marks.hand_over(plan, state, found.marker, r.kind, r.name):
        return
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


def revocable(az: AzureProvider, state: Any) -> SasToken | None:
    """The grant's SAS when this destroy may revoke it by regenerating key2 (which signed it): management mode,
    the SAS is of ``--account``, the state created that account (or took it over by its owner mark), the grant is
    no ``--shared-account`` one, and no other state shares or received the account (its SAS is signed with key2
    too). Otherwise None."""
    auth = state.grant.auth if state.grant else None
    account = az.options.account or ""
    record = state.find("storage_account", account)
    if (az.sdk.data_plane or not isinstance(auth, SasToken) or auth.account_name != account or record is None
            or not record.created or az.profile.shared_account):
        return None
    found = target(az, state)
    if not found.exists or marks.stays(found.marker, state, "storage_account", account):
        return None
    return auth


def revoke_sas(az: AzureProvider, state: Any, plan: Plan) -> bool:
    """Before the first deletion of a destroy: regenerate key2 of an account this state owns when the grant's SAS
    was signed with it (`revocable`), so the SAS stops working at once even if a later deletion fails. Deleting
    the state does not invalidate a SAS; only its expiry or a new signing key does
    (https://learn.microsoft.com/azure/storage/common/storage-sas-overview#best-practices-when-using-sas); key1,
    the admin key, stays valid (https://learn.microsoft.com/rest/api/storagerp/storage-accounts/regenerate-key).

    Returns:
        True when it was regenerated (or would be, in a dry run); False when there is nothing to revoke here.
    """
    auth = revocable(az, state)
    if auth is None:
        return False
    from azure.mgmt.storage.models import StorageAccountRegenerateKeyParameters

    found = target(az, state)
    plan.update("storage_account", auth.account_name, f"regenerate key2: revokes the grant's SAS (valid until "
                f"{when(auth.expires_at)} otherwise) and any other SAS signed with key2; key1 stays",
                found.storage.storage_accounts.regenerate_key, resource_group_name=found.group,
                account_name=auth.account_name, regenerate_key=StorageAccountRegenerateKeyParameters(key_name="key2"))
    return True


def renew_command(account: str, group: str | None) -> str:
    """The Azure CLI command that regenerates key2 (``--key secondary``) of ``account``
    (https://learn.microsoft.com/cli/azure/storage/account/keys#az-storage-account-keys-renew)."""
    where = f" --resource-group {group}" if group else ""
    return f"az storage account keys renew --account-name {account}{where} --key secondary"


def credentials_left(az: AzureProvider, state: Any, account_gone: bool) -> list[str]:
    """The credentials that stay valid after destroy while the account lives: a SAS this destroy did not revoke
    (`revoke_sas`) until its expiry, with the command that revokes it; key1.

    Returns:
        One line per credential (empty when the account is gone or the SAS was revoked).
    """
    auth = state.grant.auth if state.grant else None
    if account_gone or az.sas_revoked:
        return []
    if isinstance(auth, SasToken):
        if az.sdk.data_plane and az.sdk.connection is not None:
            how = (f"revoke it by renewing the connection string's key: {renew_command(auth.account_name, None)} "
                   "(or --key primary if the connection string holds key1)")
        else:
            group = az.options.group if not az.sdk.data_plane else None
            how = f"revoke it (and every SAS signed with key2): {renew_command(auth.account_name, group)}"
            if az.sdk.sandbox:
                how = "the sandbox's Azurite keys are fixed"
        return [f"sas of {auth.account_name} stays valid until {when(auth.expires_at)} (UTC); {how}"]
    if isinstance(auth, KeyPair):
        return [f"account key key1 of {auth.access_key} (rotate it to revoke)"]
    return []
