"""Private blob containers: ensured through the data plane (sandbox, connection string) or Resource Manager
(management mode); an adopted public container is made private. Anonymous access:
https://learn.microsoft.com/azure/storage/blobs/anonymous-read-access-prevent."""

from __future__ import annotations

from typing import Any

from provision.ledger import Plan
from provision.models import Resource
from provision.providers.azure.sdk import AccountAccess, AzureSdk, key_credential, plain
from provision.providers.azure.steps import adopt_or_keep, create

PRIVATE = "private (no anonymous access)"


def ensure_containers_data_plane(sdk: AzureSdk, access: AccountAccess, containers: list[str], state: Any,
                                 plan: Plan) -> None:
    """Create each missing container private, adopt the others, and turn off an adopted one's public access
    (keeping its stored access policies), with the account key."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    service = sdk.blob_service(access, key_credential(access))
    for name in containers:
        client = service.get_container_client(name)
        try:
            props = client.get_container_properties()
        except ResourceNotFoundError:
            resource = Resource(kind="container", name=name, created=True, parent=access.name)
            try:
                create(plan, resource, PRIVATE, client.create_container)
            except ResourceExistsError:
                # azure-core retried a create whose answer was lost: absent a moment ago, present in our own
                # account now, so our first attempt made it — keep it tracked as created
                plan.record(resource)
            continue
        adopt_or_keep(plan, Resource(kind="container", name=name, created=False, parent=access.name),
                      "private" if not props.public_access else f"public access {props.public_access}")
        if props.public_access:
            policy = client.get_container_access_policy()
            plan.update("container", name, f"public access {props.public_access} → off (private)",
                        client.set_container_access_policy, signed_identifiers={
                            i.id: i.access_policy for i in policy.get("signed_identifiers") or []},
                        public_access=None)


def ensure_container_mgmt(client: Any, group: str, account: str, name: str, account_exists: bool, state: Any,
                          plan: Plan) -> None:
    """Through Resource Manager: create the container private when missing (or when the account does not exist
    yet), else adopt it and turn its public access off."""
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
        create(plan, Resource(kind="container", name=name, created=True, parent=account), PRIVATE,
               client.blob_containers.create, resource_group_name=group, account_name=account, container_name=name,
               blob_container=private)
        return
    level = str(plain(getattr(current.container_properties, "public_access", None)) or "None")
    adopt_or_keep(plan, Resource(kind="container", name=name, created=False, parent=account),
                  "private" if level == "None" else f"public access {level}")
    if level != "None":
        plan.update("container", name, f"public access {level} → off (private)", client.blob_containers.update,
                    resource_group_name=group, account_name=account, container_name=name, blob_container=private)


def has_blobs(service: Any, container: str) -> bool:
    """True when ``container`` (through the BlobServiceClient ``service``) holds at least one blob; False when it
    is empty or gone."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return next(iter(service.get_container_client(container).list_blobs(results_per_page=1)), None) is not None
    except ResourceNotFoundError:
        return False
