"""Sharing and handing over on Azure: a container, storage account or resource group that another environment
adopted with ``--adopt`` is handed over on its creator's destroy rather than deleted under its other user.

The owner mark itself is `provision.providers.owner_marks.OwnerMark` (tags ``provision:env|grant|state`` on
accounts and groups, metadata ``provisionenv|grant|state`` on containers). A state that adopts a resource another
state marked adds itself to one more entry, the share list: tag ``provision:shared`` / metadata
``provisionshared`` = space-separated ``<state>:<grant>:<env>`` items (one key, so that no grant or state name has
to fit the C# identifier rule of metadata names:
https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).

- destroy of the creator: a resource with sharers gets the first sharer's mark and loses that sharer's entry
  (`hand_over`); one whose mark already names another state is left alone.
- destroy of a sharer: a resource whose mark now names it (handed over) is recorded as created and deleted
  (`take_over`); afterwards its share entry is dropped from what it adopted (`leave`).

Azure Blob's Set Container Metadata replaces the whole set
(https://learn.microsoft.com/rest/api/storageservices/set-container-metadata), so every write merges first.
Metadata names and values: https://learn.microsoft.com/en-us/rest/api/storageservices/setting-and-retrieving-properties-and-metadata-for-blob-resources.

The decisions are the cloud-independent ones of `provision.providers.owner_marks` (`stays`, `hand_over`,
`take_over`, `leave`, and `join` here on its `share`); `AzureMarks` is the Azure
`provision.providers.owner_marks.MarkStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provision.ledger import Plan
from provision.providers.owner_marks import Marks, MarkStore, OwnerMark, Style, share
from provision.providers.owner_marks import hand_over as hand_over  # the decisions, re-exported (on `AzureMarks`)
from provision.providers.owner_marks import leave as leave
from provision.providers.owner_marks import stays as stays
from provision.providers.owner_marks import take_over as take_over

SHARED = {"tag": "provision:shared", "meta": "provisionshared"}
"""The key of the share list, per style."""
MARKED_KINDS = ("container", "storage_account", "resource_group")
STYLE: dict[str, Style] = {"container": "meta", "storage_account": "tag", "resource_group": "tag"}


def sharers(found: dict[str, str] | None, style: Style) -> list[OwnerMark]:
    """The states listed as sharing the resource (``found``: its tags or metadata), in list order."""
    items = {str(k).lower(): str(v) for k, v in (found or {}).items()}.get(SHARED[style].lower(), "").split()
    marks = []
    for item in items:
        state, _, rest = item.partition(":")
        grant, _, env = rest.partition(":")
        if state:
            marks.append(OwnerMark(env or "?", grant or "?", state))
    return marks


def parse(found: dict[str, str] | None, style: Style) -> Marks:
    """The `Marks` in a resource's tags or metadata ``found`` (``raw``: ``found``)."""
    return Marks(OwnerMark.read(found, style), tuple(sharers(found, style)), raw=found)


def _with(found: dict[str, str] | None, style: Style, listed: list[OwnerMark],
          mark: OwnerMark | None = None) -> dict[str, str]:
    """``found`` with the share list replaced by ``listed`` (dropped when empty) and, when given, the owner mark
    replaced by ``mark``; keys of the mark and the list are written in their canonical spelling."""
    drop = {SHARED[style].lower()} | ({k.lower() for k in mark.fields(style)} if mark else set())
    values = {k: v for k, v in (found or {}).items() if str(k).lower() not in drop}
    if mark is not None:
        values.update(mark.fields(style))
    if listed:
        values[SHARED[style]] = " ".join(f"{m.state}:{m.grant}:{m.env}" for m in listed)
    return values


@dataclass
class AzureMarks(MarkStore):
    """Reads and writes the tags / metadata of the marked kinds (`MARKED_KINDS`): the Azure `MarkStore`.

    Args:
        read_values: ``(kind, name) -> dict or None`` (None: the resource does not exist).
        write_values: ``(kind, name) -> a callable(values)`` that replaces the resource's tags / metadata.
    """

    read_values: Callable[[str, str], dict[str, str] | None]
    write_values: Callable[[str, str], Callable[[dict[str, str]], Any]]
    kinds = MARKED_KINDS

    def read(self, kind: str, name: str) -> Marks | None:
        """The marks in the resource's tags or metadata; None when it does not exist.

        Raises:
            azure.core.exceptions.HttpResponseError: a refusal other than "not found".
        """
        found = self.read_values(kind, name)
        return None if found is None else parse(found, STYLE[kind])

    def write(self, plan: Plan, kind: str, name: str, detail: str, before: Marks, owner: OwnerMark | None = None,
              add: OwnerMark | None = None, drop: OwnerMark | None = None) -> None:
        """`MarkStore.write`: the whole set of tags or metadata replaced (``before.raw`` merged), through
        ``plan.update``.

        Raises:
            azure.core.exceptions.HttpResponseError: Azure refused.
        """
        listed = [m for m in before.sharers if drop is None or not m.names(drop)] + ([add] if add else [])
        plan.update(kind, name, detail, self.write_values(kind, name),
                    values=_with(before.raw, STYLE[kind], listed, mark=owner))


def join(plan: Plan, state: Any, kind: str, name: str, found: dict[str, str] | None,
         write: Callable[[dict[str, str]], Any] | None) -> None:
    """After adopting a resource another state marked (``--adopt``): add this grant to its share list (once), so
    that its creator's destroy hands it over instead of deleting it (`provision.providers.owner_marks.share`).
    Nothing for an unmarked resource or one of this state's own.

    Args:
        found: its current tags or metadata. write: replaces them (``write(values)``); None: not recorded.
    """
    if write is not None:
        share(plan, state, AzureMarks(lambda *_: found, lambda *_: write), kind, name, parse(found, STYLE[kind]))


# ---- writers and readers per kind (admin clients) ---------------------------------------------------------------
def container_data_writer(service: Any, name: str) -> Callable[[dict[str, str]], Any]:
    """Replaces a container's metadata through the data plane (Set Container Metadata)."""
    return lambda values: service.get_container_client(name).set_container_metadata(metadata=values)


def container_mgmt_writer(storage: Any, group: str, account: str, name: str) -> Callable[[dict[str, str]], Any]:
    """Replaces a container's metadata through Resource Manager (Blob Containers - Update)."""
    def write(values: dict[str, str]) -> Any:
        from azure.mgmt.storage.models import BlobContainer, ContainerProperties

        return storage.blob_containers.update(group, account, name, BlobContainer(
            container_properties=ContainerProperties(metadata=values)))
    return write


def account_writer(storage: Any, group: str, name: str) -> Callable[[dict[str, str]], Any]:
    """Replaces a storage account's tags (Storage Accounts - Update)."""
    def write(values: dict[str, str]) -> Any:
        from azure.mgmt.storage.models import StorageAccountUpdateParameters

        return storage.storage_accounts.update(group, name, StorageAccountUpdateParameters(tags=values))
    return write


def group_writer(resource: Any, group: str, location: str) -> Callable[[dict[str, str]], Any]:
    """Replaces a resource group's tags (Resource Groups - Create Or Update of the existing group: same location)."""
    def write(values: dict[str, str]) -> Any:
        from azure.mgmt.resource.resources.models import ResourceGroup

        return resource.resource_groups.create_or_update(group, ResourceGroup(location=location, tags=values))
    return write


def data_plane_marker(service: Any) -> AzureMarks:
    """The `AzureMarks` of containers through the data plane (``service``: a BlobServiceClient with the key)."""
    def read(kind: str, name: str) -> dict[str, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        if kind != "container":
            return None
        try:
            return dict(service.get_container_client(name).get_container_properties().metadata or {})
        except ResourceNotFoundError:
            return None
    return AzureMarks(read, lambda kind, name: container_data_writer(service, name))


def mgmt_marker(storage: Any, resource: Any, group: str, account: str) -> AzureMarks:
    """The `AzureMarks` of containers, the account and the resource group through Resource Manager."""
    def read(kind: str, name: str) -> dict[str, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            if kind == "container":
                props = storage.blob_containers.get(group, account, name).container_properties
                return dict(getattr(props, "metadata", None) or {})
            if kind == "storage_account":
                return dict(storage.storage_accounts.get_properties(group, name).tags or {})
            return dict(resource.resource_groups.get(name).tags or {})
        except ResourceNotFoundError:
            return None

    def writer(kind: str, name: str) -> Callable[[dict[str, str]], Any]:
        if kind == "container":
            return container_mgmt_writer(storage, group, account, name)
        if kind == "storage_account":
            return account_writer(storage, group, name)
        return group_writer(resource, name, resource.resource_groups.get(name).location)
    return AzureMarks(read, writer)
