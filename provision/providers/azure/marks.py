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
(A generic share list next to `OwnerMark` in ``owner_marks.py`` could serve GCS labels too.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provision.ledger import Plan
from provision.providers.owner_marks import OwnerMark, Style

SHARED = {"tag": "provision:shared", "meta": "provisionshared"}
"""The key of the share list, per style."""
MARKED_KINDS = ("container", "storage_account", "resource_group")
STYLE: dict[str, Style] = {"container": "meta", "storage_account": "tag", "resource_group": "tag"}


def me(state: Any) -> OwnerMark:
    """This grant's mark (env, grant name, state id)."""
    return OwnerMark.of(state)


def _low(found: dict[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (found or {}).items()}


def sharers(found: dict[str, str] | None, style: Style) -> list[OwnerMark]:
    """The states listed as sharing the resource (``found``: its tags or metadata), in list order."""
    items = _low(found).get(SHARED[style].lower(), "").split()
    marks = []
    for item in items:
        state, _, rest = item.partition(":")
        grant, _, env = rest.partition(":")
        if state:
            marks.append(OwnerMark(env or "?", grant or "?", state))
    return marks


def _same(a: OwnerMark, b: OwnerMark) -> bool:
    return a.state == b.state and a.grant == b.grant


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
class Marker:
    """Reads and writes the tags / metadata of the marked kinds (`MARKED_KINDS`) through one interface.

    Args:
        read_values: ``(kind, name) -> dict or None`` (None: the resource does not exist).
        write_values: ``(kind, name) -> a callable(values)`` that replaces the resource's tags / metadata.
    """

    read_values: Callable[[str, str], dict[str, str] | None]
    write_values: Callable[[str, str], Callable[[dict[str, str]], Any]]

    def read(self, kind: str, name: str) -> dict[str, str] | None:
        """The resource's tags or metadata (``{}`` when none); None when it does not exist."""
        return self.read_values(kind, name)

    def write(self, plan: Plan, kind: str, name: str, detail: str, values: dict[str, str]) -> None:
        """Replace its tags or metadata with ``values``, through ``plan.update``."""
        plan.update(kind, name, detail, self.write_values(kind, name), values=values)


def join(plan: Plan, state: Any, kind: str, name: str, found: dict[str, str] | None,
         write: Callable[[dict[str, str]], Any] | None) -> None:
    """After adopting a resource another state marked (``--adopt``): add this grant to its share list (once), so
    that its creator's destroy hands it over instead of deleting it. Nothing for an unmarked resource or one of
    this state's own.

    Args:
        found: its current tags or metadata. write: replaces them (``write(values)``); None: not recorded.
    """
    style = STYLE[kind]
    mark = OwnerMark.read(found, style)
    mine = me(state)
    if write is None or mark is None or mark.state == mine.state or not mine.state:
        return
    listed = sharers(found, style)
    if any(_same(m, mine) for m in listed):
        return
    plan.update(kind, name, f"shared with provision env {mine.env!r} (grant {mine.grant!r}): its creator's destroy "
                "hands it over", write, values=_with(found, style, listed + [mine]))


def _given_away(found: dict[str, str], style: Style, state: Any) -> OwnerMark | None:
    mark = OwnerMark.read(found, style)
    return mark if mark is not None and mark.state != me(state).state else None


def _heirs(found: dict[str, str], style: Style, state: Any) -> list[OwnerMark]:
    return [m for m in sharers(found, style) if not _same(m, me(state))]


def stays(marker: Marker, state: Any, kind: str, name: str) -> bool:
    """True when this state's destroy must leave the resource to another state (it shares it, or it was already
    handed over); read-only."""
    if kind not in MARKED_KINDS:
        return False
    found = marker.read(kind, name)
    style = STYLE[kind]
    return found is not None and (_given_away(found, style, state) is not None or bool(_heirs(found, style, state)))


def hand_over(plan: Plan, state: Any, marker: Marker, kind: str, name: str) -> bool:
    """Before deleting a resource this state created: when another state shares it, hand it over (the first
    sharer's mark replaces this one and its share entry goes) instead of deleting it; when its mark already names
    another state (an earlier, interrupted destroy handed it over), leave it.

    Returns:
        True when this state must not delete it.
    """
    if kind not in MARKED_KINDS:
        return False
    found = marker.read(kind, name)
    if found is None:
        return False
    style = STYLE[kind]
    owner = _given_away(found, style, state)
    if owner is not None:
        plan.note("no change", kind, name, f"handed over to provision env {owner.env!r} (grant {owner.grant!r})")
        return True
    heirs = _heirs(found, style, state)
    if not heirs:
        return False
    heir = heirs[0]
    rest = [m for m in sharers(found, style) if not _same(m, heir) and not _same(m, me(state))]
    marker.write(plan, kind, name, f"handed over to provision env {heir.env!r} (grant {heir.grant!r}, it shares "
                 "it); not deleted", _with(found, style, rest, mark=heir))
    return True


def take_over(plan: Plan, state: Any, marker: Marker) -> None:
    """Before a destroy: a resource this state adopted whose mark now names this grant (its creator's destroy
    handed it over) is recorded as created, so this destroy deletes it."""
    for r in list(state.resources):
        if r.kind in MARKED_KINDS and not r.created:
            found = marker.read(r.kind, r.name)
            mark = OwnerMark.read(found, STYLE[r.kind])
            if found is not None and mark is not None and _same(mark, me(state)):
                plan.record(r.model_copy(update={"created": True}))
                plan.note("no change", r.kind, r.name, "handed over to this grant by its creator")


def leave(plan: Plan, state: Any, marker: Marker) -> None:
    """After a destroy: drop this grant's entry from the share list of what it adopted (it no longer uses it)."""
    for r in list(state.resources):
        if r.kind in MARKED_KINDS and not r.created:
            found = marker.read(r.kind, r.name)
            if found is None:
                continue
            style = STYLE[r.kind]
            listed = sharers(found, style)
            if any(_same(m, me(state)) for m in listed):
                marker.write(plan, r.kind, r.name, f"no longer shared with provision env {me(state).env!r}",
                             _with(found, style, [m for m in listed if not _same(m, me(state))]))


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


def data_plane_marker(service: Any) -> Marker:
    """The `Marker` of containers through the data plane (``service``: a BlobServiceClient with the key)."""
    def read(kind: str, name: str) -> dict[str, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        if kind != "container":
            return None
        try:
            return dict(service.get_container_client(name).get_container_properties().metadata or {})
        except ResourceNotFoundError:
            return None
    return Marker(read, lambda kind, name: container_data_writer(service, name))


def mgmt_marker(storage: Any, resource: Any, group: str, account: str) -> Marker:
    """The `Marker` of containers, the account and the resource group through Resource Manager."""
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
    return Marker(read, writer)
