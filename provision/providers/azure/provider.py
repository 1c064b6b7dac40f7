"""`AzureProvider`: Azure Blob through `provision.providers.base.BaseProvider` — a storage account with secure
defaults, private containers, and exactly one credential per grant: an account SAS (default), the account key
(``--account-key``) or RBAC for a managed identity (``--keyless``).

Two modes:

- **management** (``--account``): Azure Resource Manager (azure-mgmt-resource / -storage / -authorization) with
  ``DefaultAzureCredential`` (no browser prompt); `provision.providers.azure.account`.
- **data-plane only** (``--connection-string`` / ``AZURE_STORAGE_CONNECTION_STRING``, and ``--env sandbox``, which
  uses the sandbox's Azurite account): containers and SAS through azure-storage-blob; no management call.

Every client comes from `provision.providers.azure.sdk.AzureSdk`; every change goes through the ledger.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from provision.errors import BadInput, CloudRefused, ProvisionError
from provision.models import Grant, Resource
from provision.names import check_container, resolve_buckets
from provision.profiles import Profile
from provision.providers.azure import account, containers, credentials, destroy, marks, sdk, verify
from provision.providers.azure.options import CONNECTION_STRING_ENV, AzureOptions, choose_connection_string, without_key
from provision.providers.azure.sdk import AccountAccess, AzureSdk, key_credential, parse_connection_string
from provision.providers.base import BaseProvider, Plan, VerifyRow, grant_credential


class AzureProvider(BaseProvider):
    """Provision Azure Blob containers and one credential for exactly them.

    Args:
        profile: the validated inputs (``provider == "azure"``); never changed. No I/O happens here. What the
            checks resolve (the access an account key implies, the connection string from the environment) is
            kept on this object; `resolved_inputs` is what the state should store.
        now: the current time (aware UTC; default: now), for SAS expiry and renewal.

    Raises:
        BadInput: invalid container/account/resource-group names, a subscription or principal that is not a GUID,
            an unparseable ``--sas-expiry`` or ``--renew-before``, conflicting options (``--account-key`` with
            ``--readonly`` or ``--keyless``, management-only options in data-plane mode, SAS options without a SAS,
            ``--account`` different from the connection string's), a connection string without an account name or
            with an http endpoint or a SAS.

    Attributes:
        options: the Azure options of ``profile``. choice: the resolved credential (`options.Credential`).
        containers: the container names. sdk: the client seam. now: as given.
    """

    name = "azure"
    service = "Azure"
    bucket_kinds = ("container", "storage_account")

    def __init__(self, profile: Profile, now: datetime | None = None) -> None:
        super().__init__(profile)
        self.now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
        self.options = AzureOptions.of(profile)
        self.containers = resolve_buckets(profile.buckets, profile.prefix, check_container, "container")
        self.choice = self.options.credential(profile.access, "access" in profile.model_fields_set, self.now)
        self.options.check_sandbox(profile.sandbox)
        self.connection_string: str | None = None
        connection = None
        if not profile.sandbox:
            self.connection_string = choose_connection_string(self.options.connection_string,
                                                              os.environ.get(CONNECTION_STRING_ENV) or None)
            if self.connection_string is not None:
                connection = parse_connection_string(self.connection_string, self.options.account)
        self.sdk = AzureSdk(self.options, profile.sandbox, connection)
        self.options.check_plane(profile.sandbox, self.data_plane)
        self.destroy_target: destroy.Target | None = None
        self.sas_revoked = False

    @property
    def data_plane(self) -> bool:
        """True in data-plane-only mode (sandbox or connection string): no management call at all."""
        return self.sdk.data_plane

    def resolved_inputs(self) -> dict[str, Any]:
        """The profile as the state stores it (``state.inputs``, JSON-ready): the access an account key implies
        (``full``), the principal id lower-cased, and the connection string in use — ``--connection-string`` or
        ``AZURE_STORAGE_CONNECTION_STRING`` — without its ``AccountKey`` (later commands take the key from the
        environment; `provision.lifecycle.reapply_command` prints it as ``$AZURE_STORAGE_CONNECTION_STRING``)."""
        inputs = self.profile.model_dump(mode="json")
        inputs["access"] = self.choice.access.value
        if self.choice.principal_id:
            inputs["principal_id"] = self.choice.principal_id
        if self.connection_string is not None:
            inputs["connection_string"] = without_key(self.connection_string)
        return inputs

    def data_access(self) -> AccountAccess:
        """The account's data plane in data-plane-only mode (`sdk.AzureSdk.data_access`)."""
        return self.sdk.data_access()

    def grant(self, access: AccountAccess, auth: Any) -> Grant:
        """The Grant for ``auth`` on this profile's containers of ``access``'s account."""
        return Grant(provider="azure", storage_provider="azure", access=self.choice.access, buckets=self.containers,
                     endpoint=access.blob_url, endpoint_url=None if access.public else access.blob_url, port=None,
                     secure=access.blob_url.startswith("https://"), region=access.location, auth=auth)

    container_scope = staticmethod(credentials.container_scope)
    role_assignment_name = staticmethod(credentials.role_assignment_name)
    insecure_settings = staticmethod(account.insecure_settings)

    # ---- the SDK's errors -----------------------------------------------------------------------------------
    def refused_errors(self) -> tuple[type[BaseException], ...]:
        """azure-core's ``AzureError`` family (answers, authentication and transport alike)."""
        return sdk.azure_errors()

    def unreachable_errors(self) -> tuple[type[BaseException], ...]:
        """``ServiceRequestError`` / ``ServiceResponseError``: no answer (`sdk.unreachable_errors`)."""
        return sdk.unreachable_errors()

    def describe(self, exc: BaseException) -> str:
        """``<code>: <first line>`` (`sdk.describe`)."""
        return sdk.describe(exc)

    def missing_credentials(self, exc: BaseException) -> ProvisionError | None:
        """Azure refused or found no admin credential (``ClientAuthenticationError``, which azure-identity's
        ``CredentialUnavailableError`` is): sign in, or use the sandbox."""
        from azure.core.exceptions import ClientAuthenticationError

        if not isinstance(exc, ClientAuthenticationError):
            return None
        return CloudRefused(f"Azure refused the credentials: {self.describe(exc)}",
                            "sign in (az login), use a managed identity or set AZURE_CLIENT_ID/SECRET/TENANT_ID; "
                            "or try --env sandbox")

    # ---- apply ----------------------------------------------------------------------------------------------
    def ensure(self, state: Any, plan: Plan) -> Grant | None:
        """Ensure account (management mode), containers and credential.

        Returns:
            The Grant; None in a dry run when a new SAS or key would be issued.

        Raises:
            BadInput: data-plane ``--rotate`` of an account key, a ``--sas-expiry`` in the past when a SAS is to
                be issued (a dry run lists it instead), an ambiguous subscription, the sandbox not running.
        """
        if plan.rotate and self.choice.mode == "account_key" and self.data_plane:
            raise BadInput("the account key cannot be rotated without the management plane",
                           "rotate it in the portal (Access keys) or with `az storage account keys renew`, then "
                           "re-run with the new connection string")
        if self.data_plane:
            access: AccountAccess | None = self.sdk.data_access()
            assert access is not None
            self._past_expiry(plan, access.name)
            service = self.sdk.blob_service(access, key_credential(access))
            found = containers.read_containers_data_plane(service, self.containers)
            containers.check_marks(found, state, self.profile.adopt)
            self.check_shared(containers.outside(containers.list_containers_data_plane(service), self.containers,
                                                 state), access.name, plan)
            containers.ensure_containers_data_plane(service, access, found, state, plan)
            auth = credentials.ensure_credential(self, access, state, plan, regenerate=None)
        else:
            self._past_expiry(plan, self.options.account or "")
            access, regenerate = account.ensure_management(self, state, plan)
            if access is None:  # a dry run: the account does not exist yet
                if self.choice.mode != "keyless":
                    credentials.plan_new_credential(self, plan)
                return None
            auth = credentials.ensure_credential(self, access, state, plan, regenerate)
        return None if auth is None else self.grant(access, auth)

    def check_shared(self, others: list[str], account: str, plan: Plan) -> None:
        """Least privilege of an account SAS: it reaches every container of its account
        (https://learn.microsoft.com/rest/api/storageservices/create-account-sas), so a SAS grant on an account
        holding ``others`` (containers outside the grant) needs ``--shared-account``. In the sandbox, whose one
        Azurite account every trial shares, it is reported instead of refused.

        Raises:
            BadInput: SAS mode, ``others`` not empty, no ``--shared-account``, not the sandbox (names up to 3).
        """
        if self.choice.mode != "sas" or not others:
            return
        names = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        what = f"the account SAS also reaches {len(others)} container(s) of {account} outside the grant: {names}"
        if self.profile.shared_account:
            plan.note("no change", "sas", account, f"{what} (--shared-account)")
        elif self.profile.sandbox:
            plan.note("no change", "sas", account, f"{what} (the sandbox's shared account; elsewhere this needs "
                      "--shared-account)")
        else:
            raise BadInput(what, "pass --shared-account to accept that, or give the grant an account of its own "
                           "(--account NEW creates one)")

    def _past_expiry(self, plan: Plan, name: str) -> None:
        """A SAS with ``--sas-expiry`` in the past cannot be issued: refused before any cloud call (a dry run
        lists it as a due change)."""
        if self.choice.expiry_error is not None and self.choice.mode == "sas":
            plan.blocked(self.choice.expiry_error, "sas", name)

    # ---- destroy --------------------------------------------------------------------------------------------
    def holds_objects(self, state: Any, resource: Resource) -> bool:
        """See `destroy.holds_objects`."""
        return destroy.holds_objects(self, state, resource)

    def delete_resource(self, state: Any, resource: Resource, plan: Plan, delete_data: bool) -> None:
        """See `destroy.delete_resource`."""
        destroy.delete_resource(self, state, resource, plan, delete_data)

    def destroy(self, state: Any, plan: Plan, delete_data: bool) -> list[str]:
        """`BaseProvider.destroy` between taking over what another state handed over to this one
        (`marks.take_over`) and leaving the share lists of what it adopted (`marks.leave`); the grant's SAS is
        revoked before the first deletion when the account is this state's (`destroy.revoke_sas`). The
        credentials that stay valid while the account lives (a SAS until its expiry, with the command that
        revokes it; key1) are appended to what is left in place.

        Returns:
            Names of adopted resources left in place and of credentials still valid.

        Raises:
            PartialFailure: Azure refused a deletion or a mark change (state keeps what still exists); as the base.
        """
        self.sas_revoked = False
        account = state.find("storage_account", self.options.account or "")
        account_gone = not self.data_plane and account is not None and account.created
        kept = super().destroy(state, plan, delete_data)
        account_gone = account_gone and state.find("storage_account", account.name) is None  # not handed over
        return kept + destroy.credentials_left(self, state, account_gone)

    def mark_store(self, state: Any) -> marks.AzureMarks | None:
        """`BaseProvider.mark_store`: container metadata and ARM tags (`provision.providers.azure.marks`); None
        when the state adopted no marked resource (then finding the account's target makes no request)."""
        if not any(r.kind in marks.MARKED_KINDS and not r.created for r in state.resources):
            return None
        return destroy.target(self, state).marker

    # ---- verify and data ------------------------------------------------------------------------------------
    def verify(self, state: Any) -> list[VerifyRow]:
        """See `verify.verify`."""
        return verify.verify(self, state)

    def objects(self, state: Any, bucket: str, write: bool) -> Any:
        """A `objects.BlobObjects` store for container ``bucket``: the grant's SAS or key when it can do the job
        (`provision.providers.base.grant_credential`), else the admin credential (key1 / the connection
        string's key)."""
        from provision.providers.azure.objects import BlobObjects

        access = self.sdk.stored_access(state)
        auth = grant_credential(state.grant, write)
        credential = credentials.user_credential(auth) if auth is not None else key_credential(access)
        return BlobObjects(self.sdk.blob_service(access, credential, pool=64).get_container_client(bucket), bucket)
