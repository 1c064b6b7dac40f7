"""The grant's one credential: an account SAS (issued, kept, renewed, rotated), the account key (key1), or RBAC
role assignments for a managed identity (``--keyless``).

Sources: account SAS https://learn.microsoft.com/rest/api/storageservices/create-account-sas (signed with key2,
so rotating key2 revokes it and leaves key1, the admin credential, alone); key rotation
https://learn.microsoft.com/azure/storage/common/storage-account-keys-manage; built-in blob roles
https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from provision.ledger import Plan
from provision.models import Ambient, KeyPair, Resource, SasToken
from provision.policies import AZURE_BLOB_ROLES
from provision.providers.azure.sas import SAS_CLOCK_SKEW, describe_sas, issue_sas, sas_fields, sas_renewal, span, when
from provision.providers.azure.sdk import AccountAccess, error_code
from provision.providers.azure.steps import create

if TYPE_CHECKING:
    from provision.providers.azure.provider import AzureProvider


def user_credential(auth: Any, account: str | None = None) -> Any:
    """The azure-storage-blob credential of a grant's auth: a SAS's token, or an account key's
    ``{"account_name", "account_key"}`` (for ``account``, default the key's own account)."""
    if isinstance(auth, SasToken):
        return auth.token
    return {"account_name": account or auth.access_key, "account_key": auth.secret_key}


def plan_new_credential(az: AzureProvider, plan: Plan) -> None:
    """A dry run with no account yet: report the credential that would be issued (nothing for a SAS whose
    ``--sas-expiry`` is in the past: the ensure step reported that already)."""
    account = az.options.account or ""
    if az.choice.mode == "account_key":
        plan.note("issue", "account_key", account, "key1 of the account (full access)")
    elif az.choice.expiry is not None:
        plan.note("issue", "sas", account, f"account SAS {describe_sas(az.choice.access)}, expires "
                  f"{when(az.choice.expiry.expiry(az.now))}, signed with key2")


def ensure_credential(az: AzureProvider, access: AccountAccess, state: Any, plan: Plan,
                      regenerate: Callable[..., None] | None) -> Any:
    """The grant's auth: `Ambient` (keyless), the account key, or a SAS; None in a dry run that would issue one.

    Args:
        regenerate: regenerates a key (management mode), for ``--rotate``; None in data-plane mode.
    """
    if az.choice.mode == "keyless":
        return Ambient()
    if az.choice.mode == "account_key":
        return ensure_account_key(az, access, state, plan, regenerate)
    return ensure_sas(az, access, state, plan, regenerate)


def ensure_account_key(az: AzureProvider, access: AccountAccess, state: Any, plan: Plan,
                       regenerate: Callable[..., None] | None) -> KeyPair | None:
    """Key1 of the account: kept while the stored one is still key1, read again when it changed, regenerated
    first with ``--rotate`` (management mode; data-plane mode refuses ``--rotate`` earlier)."""
    stored = state.grant.auth if state.grant and isinstance(state.grant.auth, KeyPair) else None
    if stored is not None and stored.access_key != access.name:
        stored = None
    if plan.rotate:
        reason = "rotation: key1 regenerated; the old key stops working now"
        if regenerate is not None:
            plan.update("storage_account", access.name, "regenerate key1 (revokes the old account key)", regenerate,
                        which="key1")
            access.forget_keys()
    elif stored is not None:
        if stored.secret_key == access.key("key1"):
            plan.note("no change", "account_key", access.name, "key1 (full access to the account)")
            return stored
        reason = "key1 changed since the last run (rotated outside provision)"
    else:
        reason = "key1 of the account: full access to every container in it (Supervisely's Azure backend)"
    key = plan.issue("account_key", access.name, reason, access.key,
                     lambda value: (None, az.grant(access, KeyPair(access_key=access.name, secret_key=value))),
                     which="key1")
    return KeyPair(access_key=access.name, secret_key=key) if key is not None else None


def ensure_sas(az: AzureProvider, access: AccountAccess, state: Any, plan: Plan,
               regenerate: Callable[..., None] | None) -> SasToken | None:
    """The stored SAS while `sas_renewal` finds no reason to replace it (a different ``--sas-expiry`` is reported,
    not acted on), else a new one; ``--rotate`` regenerates key2 first in management mode (revoking every SAS
    signed with it)."""
    choice = az.choice
    stored = state.grant.auth if state.grant and isinstance(state.grant.auth, SasToken) else None
    if stored is not None and stored.account_name != access.name:
        stored = None
    reason = None if stored is None else sas_renewal(stored, choice.access, az.now, choice.renew_before)
    if stored is not None and reason is None and not plan.rotate:
        fields = sas_fields(stored.token)
        plan.note("no change", "sas", access.name, f"sp={fields.get('sp', '')}, expires {when(stored.expires_at)}"
                  f" ({span(stored.expires_at - az.now)} left)")
        differs = choice.expiry.differs(stored) if choice.expiry else f"it expires {when(stored.expires_at)}"
        if differs:
            plan.note("no change", "sas", access.name, f"--sas-expiry {az.options.sas_expiry or ''} differs from "
                      f"the stored SAS ({differs}): kept; pass --rotate to issue one with the new expiry")
        return stored
    if choice.expiry is None:  # a new SAS is due but --sas-expiry is in the past: `ensure` reported it
        return None
    if stored is None:
        reason = f"new account SAS, signed with {access.signing_key_name}"
        if access.signing_key_name != "key2":
            reason += " (revoking it means rotating that key)"
    elif plan.rotate:
        reason = "rotation (--rotate)"
        if regenerate is not None:
            plan.update("storage_account", access.name, "regenerate key2: revokes every SAS signed with it (this "
                        "environment's old SAS and any other's on this account)", regenerate, which="key2")
            access.forget_keys()
            plan.set_grant(None)  # the stored SAS is dead now: a crash before the new one is saved must not leave
            # a re-run believing it still works
        else:
            reason += (f"; the old SAS stays valid until {when(stored.expires_at)}: revoking it means rotating "
                       f"{access.signing_key_name}")
    start = az.now - SAS_CLOCK_SKEW
    expiry = choice.expiry.expiry(az.now)

    def sign(start: datetime, expiry: datetime) -> SasToken:
        token = issue_sas(access.name, access.key("key2"), choice.access, start, expiry)
        return SasToken(account_name=access.name, token=token, expires_at=expiry)

    return plan.issue("sas", access.name, f"{reason}: {describe_sas(choice.access)}, expires {when(expiry)}",
                      sign, lambda sas: (None, az.grant(access, sas)), start=start, expiry=expiry)


# ---- keyless: RBAC role assignments -----------------------------------------------------------------------------
def container_scope(subscription: str, group: str, account: str, container: str) -> str:
    """The ARM resource id of a blob container (the scope of its role assignments)."""
    return (f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/"
            f"{account}/blobServices/default/containers/{container}")


def role_assignment_name(scope: str, role_id: str, principal: str) -> str:
    """A deterministic GUID for (scope, role, principal), so a re-run finds the assignment it made."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"provision:{scope.lower()}:{role_id}:{principal.lower()}"))


def ensure_role_assignment(az: AzureProvider, client: Any, subscription: str, group: str, account: str,
                           container: str, state: Any, plan: Plan) -> None:
    """Assign the access level's built-in blob role (`provision.policies.AZURE_BLOB_ROLES`) to the principal on
    ``container``, deleting an assignment of ours for another role there (the access changed)."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

    role_name, role_id = AZURE_BLOB_ROLES[az.choice.access]
    principal = az.choice.principal_id or ""
    scope = container_scope(subscription, group, account, container)
    name = role_assignment_name(scope, role_id, principal)
    for stale in [r for r in state.resources if r.kind == "role_assignment" and r.parent == container
                  and r.name != name and r.created]:
        plan.delete("role_assignment", stale.name, f"on {container} (access changed)", delete_role_assignment,
                    forget=("role_assignment", stale.name), client=client, scope=scope, assignment=stale.name)
    try:
        current = client.role_assignments.get(scope, name)
    except ResourceNotFoundError:
        current = None
    except HttpResponseError:
        if not plan.planned("container", container):  # a planned container (the scope) does not exist yet
            raise
        current = None
    if current is not None:
        plan.note("no change", "role_assignment", name, f"{role_name} on {container} for {principal}")
        return
    parameters = RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
                           f"{role_id}", principal_id=principal, principal_type="ServicePrincipal")
    try:
        create(plan, Resource(kind="role_assignment", name=name, created=True, parent=container),
               f"{role_name} on {container} for {principal}", client.role_assignments.create, scope=scope,
               role_assignment_name=name, parameters=parameters)
    except HttpResponseError as exc:
        if error_code(exc) != "RoleAssignmentExists":
            raise
        plan.note("adopt", "role_assignment", container, f"{role_name} for {principal} already assigned (by "
                  "another name); destroy leaves it")


def delete_role_assignment(client: Any, scope: str, assignment: str) -> None:
    """Delete a role assignment (one already gone counts as deleted)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        client.role_assignments.delete(scope, assignment)
    except ResourceNotFoundError:
        pass
