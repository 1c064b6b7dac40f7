"""Private blob containers: ensured through the data plane (sandbox, connection string) or Resource Manager
(management mode); an adopted public container is made private. Anonymous access:
https://learn.microsoft.com/azure/storage/blobs/anonymous-read-access-prevent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provision.ledger import Plan
from provision.models import Resource
from provision.providers.azure import marks
from provision.providers.azure.sdk import AccountAccess, plain
from provision.providers.azure.steps import adopt_or_keep, create
from provision.providers.owner_marks import OwnerMark, check_adoptable, ours

PRIVATE = "private (no anonymous access)"
PROBE_PREFIX = "provision-verify-"
"""Names of the temporary containers ``verify`` makes (never counted as someone else's)."""
PROBE_BLOB_PREFIX = ".provision-verify/"
"""Names of the probe blobs ``verify`` puts in the grant's containers (an interrupted verify may leave them)."""


def read_containers_data_plane(service: Any, containers: list[str]) -> dict[str, Any]:
    """Each container's properties (None when it does not exist), read before anything changes."""
    from azure.core.exceptions import ResourceNotFoundError

    found: dict[str, Any] = {}
    for name in containers:
        try:
            found[name] = service.get_container_client(name).get_container_properties()
        except ResourceNotFoundError:
            found[name] = None
    return found


def check_marks(found: dict[str, Any], state: Any, adopt: bool) -> None:
    """Refuse containers another provision state marked as its own (`owner_marks.check_adoptable`), before any
    change. ``found``: name -> the container's properties (data plane) or BlobContainer (management), or None."""
    for name, props in found.items():
        if props is not None:
            metadata = getattr(getattr(props, "container_properties", props), "metadata", None)
            check_adoptable("container", name, OwnerMark.read(metadata, "meta"), state, adopt)


def outside(listed: list[tuple[str, Any]], containers: list[str], state: Any) -> list[str]:
    """The account's containers an account SAS reaches beyond the grant: every listed container (name,
    metadata) that is not one of ``containers``, not this state's own (its owner mark) and not a probe container
    of a running ``verify`` (``provision-verify-*``), sorted."""
    return sorted(name for name, metadata in listed if name not in containers
                  and not name.startswith(PROBE_PREFIX) and not ours(OwnerMark.read(metadata, "meta"), state))


def list_containers_data_plane(service: Any) -> list[tuple[str, Any]]:
    """(name, metadata) of every container of the account (one listing with metadata, all pages)."""
    return [(c.name, c.metadata) for c in service.list_containers(include_metadata=True)]


def ensure_containers_data_plane(service: Any, access: AccountAccess, found: dict[str, Any], state: Any,
                                 plan: Plan) -> None:
    """Create each missing container private with this state's owner mark (metadata), adopt the others (one
    carrying this state's own mark is recorded as created: an earlier run made it and lost the answer), and turn
    off an adopted one's public access (keeping its stored access policies), with the account key.

    Args:
        service: a BlobServiceClient with the account key. found: `read_containers_data_plane`'s answer.
    """
    from azure.core.exceptions import ResourceExistsError

    metadata = OwnerMark.of(state).fields("meta")
    for name, props in found.items():
        client = service.get_container_client(name)
        if props is None:
            resource = Resource(kind="container", name=name, created=True, parent=access.name)
            try:
                create(plan, resource, PRIVATE, client.create_container, metadata=metadata or None)
            except ResourceExistsError:
                # azure-core retried a create whose answer was lost: absent a moment ago, present in our own
                # account now, so our first attempt made it — keep it tracked as created
                plan.record(resource)
            continue
        keep_or_adopt(plan, Resource(kind="container", name=name, created=False, parent=access.name),
                      "private" if not props.public_access else f"public access {props.public_access}",
                      OwnerMark.read(props.metadata, "meta"), state, props.metadata,
                      marks.container_data_writer(service, name))
        if props.public_access:
            policy = client.get_container_access_policy()
            plan.update("container", name, f"public access {props.public_access} → off (private)",
                        client.set_container_access_policy, signed_identifiers={
                            i.id: i.access_policy for i in policy.get("signed_identifiers") or []},
                        public_access=None)


def keep_or_adopt(plan: Plan, resource: Resource, detail: str, mark: OwnerMark | None, state: Any,
                  found: dict[str, str] | None = None, write: Callable[[dict[str, str]], Any] | None = None) -> None:
    """`adopt_or_keep`, except that a resource carrying this state's own mark and not recorded yet is recorded
    as created (an earlier run of this state created it and lost the answer). An adopted resource another state
    marked gets this grant in its share list (`marks.join`: ``found`` its tags/metadata, ``write`` replaces
    them), so its creator's destroy hands it over."""
    if ours(mark, state) and state.find(resource.kind, resource.name) is None:
        plan.note("no change", resource.kind, resource.name, f"{detail}; created by this environment earlier "
                  "(its owner mark): tracked as created")
        plan.record(resource.model_copy(update={"created": True}))
        return
    adopt_or_keep(plan, resource, detail)
    recorded = state.find(resource.kind, resource.name)
    if recorded is None or not recorded.created:
        marks.join(plan, state, resource.kind, resource.name, found, write)


def read_containers_mgmt(client: Any, group: str, account: str, containers: list[str],
                         account_exists: bool) -> dict[str, Any]:
    """Through Resource Manager: each container's BlobContainer (None when missing, or when the account does not
    exist yet), read before anything changes."""
    from azure.core.exceptions import ResourceNotFoundError

    found: dict[str, Any] = {}
    for name in containers:
        found[name] = None
        if account_exists:
            try:
                found[name] = client.blob_containers.get(group, account, name)
            except ResourceNotFoundError:
                pass
    return found


def list_containers_mgmt(client: Any, group: str, account: str) -> list[tuple[str, Any]]:
    """(name, metadata) of every container of the account, through Resource Manager."""
    return [(c.name, getattr(getattr(c, "container_properties", None), "metadata", None))
            for c in client.blob_containers.list(group, account)]


def ensure_container_mgmt(client: Any, group: str, account: str, name: str, current: Any, state: Any,
                          plan: Plan) -> None:
    """Through Resource Manager: create the container private with this state's owner mark when missing
    (``current`` None), else adopt it (`keep_or_adopt`) and turn its public access off."""
    from azure.mgmt.storage.models import BlobContainer, ContainerProperties

    private = BlobContainer(container_properties=ContainerProperties(public_access="None"))
    if current is None:
        marked = BlobContainer(container_properties=ContainerProperties(
            public_access="None", metadata=OwnerMark.of(state).fields("meta") or None))
        create(plan, Resource(kind="container", name=name, created=True, parent=account), PRIVATE,
               client.blob_containers.create, resource_group_name=group, account_name=account, container_name=name,
               blob_container=marked)
        return
    props = getattr(current, "container_properties", None)
    level = str(plain(getattr(props, "public_access", None)) or "None")
    keep_or_adopt(plan, Resource(kind="container", name=name, created=False, parent=account),
                  "private" if level == "None" else f"public access {level}",
                  OwnerMark.read(getattr(props, "metadata", None), "meta"), state, getattr(props, "metadata", None),
                  marks.container_mgmt_writer(client, group, account, name))
    if level != "None":
        plan.update("container", name, f"public access {level} → off (private)", client.blob_containers.update,
                    resource_group_name=group, account_name=account, container_name=name, blob_container=private)


def has_blobs(service: Any, container: str) -> bool:
    """True when ``container`` (through the BlobServiceClient ``service``) holds a blob other than verify's probe
    blobs (`PROBE_BLOB_PREFIX`, which an interrupted verify may leave); False when it is empty, holds only probe
    blobs, or is gone. The listing stops at the first other blob."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        blobs = service.get_container_client(container).list_blobs(results_per_page=100)
        return any(not b.name.startswith(PROBE_BLOB_PREFIX) for b in blobs)
    except ResourceNotFoundError:
        return False
