"""Sharing on Google Cloud: a bucket or service account another provision state created carries that state's owner
mark (`provision.providers.owner_marks.OwnerMark`); a state that adopts it with ``--adopt`` adds a share mark
naming itself, so that the creator's ``destroy`` hands it over (the first sharer's owner mark replaces the
creator's, its share mark goes) instead of deleting it under its other user, and the sharer's own ``destroy`` then
takes it over and deletes it. A sharer that is destroyed first only drops its share mark.

Where the marks live:

- a bucket: labels (https://cloud.google.com/storage/docs/tags-and-labels: keys and values of lowercase letters,
  digits, ``_`` and ``-``, at most 63 characters, 64 labels). The owner mark is ``provision_env``,
  ``provision_grant``, ``provision_state``; a share mark is ``provision_shared_<state id>_<grant>`` (cut to 63
  characters) = ``<env>``. Labels are PATCHed guarded by the metageneration read; a label removed is sent as
  ``null`` (Google drops it; an emulator that stores the ``null`` is read as if it had dropped it).
- a service account: its description (service accounts have no labels; at most 256 characters,
  https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts): the owner mark's text, then one
  `` shared=<state id>/<env>/<grant>`` per sharer, then ``: <what it is for>``. Changed with PatchServiceAccount
  (update mask ``description``).

A binding of a service account on a bucket has no mark of its own: it follows its service account (it stays while
the account stays, and is taken over with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from provision.ledger import Plan
from provision.providers.gcp.sdk import IAM_TIMEOUT, TIMEOUT, GcsClients, storage_retry
from provision.providers.owner_marks import OwnerMark, label_value, ours

SHARED_LABEL = "provision_shared_"
"""Key prefix of a bucket's share labels."""
_SHARE_TEXT = re.compile(r" shared=([0-9A-Za-z_-]+)/([A-Za-z0-9_.-]+)/([a-z0-9_-]+)")
_DESCRIPTION = re.compile(r"^(provision env=\S+ grant=\S+ state=[0-9A-Za-z_-]+)((?: shared=[^\s:]+)*)(.*)$", re.S)
MARKED_KINDS = ("bucket", "service_account")
"""Resource kinds that carry an owner mark."""


@dataclass(frozen=True)
class Marks:
    """The marks on one resource: its owner (None: unmarked) and the states sharing it, in order."""

    owner: OwnerMark | None
    sharers: tuple[OwnerMark, ...] = field(default=())

    def heirs(self, state: Any) -> list[OwnerMark]:
        """The sharers other than ``state``."""
        return [s for s in self.sharers if s.state != getattr(state, "state_id", "")]

    def given_away(self, state: Any) -> bool:
        """Its owner mark names another state (an earlier, possibly interrupted, destroy handed it over)."""
        return self.owner is not None and not ours(self.owner, state)

    def shared_by(self, state: Any) -> bool:
        """``state`` has its share mark on it."""
        return any(s.state == getattr(state, "state_id", "") for s in self.sharers)


def me(state: Any) -> OwnerMark:
    """The mark of a grant record (`OwnerMark.of`)."""
    return OwnerMark.of(state)


def live_labels(bucket: Any) -> dict[str, str]:
    """A bucket's labels, without the ``null`` values an emulator may keep for removed labels."""
    return {k: v for k, v in (bucket.labels or {}).items() if v is not None}


def _share_key(who: OwnerMark) -> str:
    return f"{SHARED_LABEL}{label_value(who.state)}_{label_value(who.grant)}"[:63]


def label_marks(labels: dict[str, str]) -> Marks:
    """The `Marks` in a bucket's labels."""
    sharers = []
    for key, env in labels.items():
        if key.startswith(SHARED_LABEL) and env is not None:
            state, _, grant = key[len(SHARED_LABEL):].partition("_")
            sharers.append(OwnerMark(env, grant, state))
    return Marks(OwnerMark.read(labels, "label"), tuple(sharers))


def text_marks(description: str | None) -> Marks:
    """The `Marks` in a service account's description."""
    found = _DESCRIPTION.match(description or "")
    if found is None:
        return Marks(OwnerMark.parse(description))
    return Marks(OwnerMark.parse(found.group(1)),
                 tuple(OwnerMark(env, grant, state) for state, env, grant in _SHARE_TEXT.findall(found.group(2))))


class BucketMarks:
    """The marks of buckets, read and changed with the admin's google-cloud-storage client."""

    kind = "bucket"

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def read(self, name: str) -> Marks | None:
        """The bucket's marks; None when it does not exist."""
        bucket = self.storage.lookup_bucket(name, retry=storage_retry(), timeout=TIMEOUT)
        return None if bucket is None else label_marks(live_labels(bucket))

    def change(self, plan: Plan, name: str, detail: str, owner: OwnerMark | None = None,
               add: OwnerMark | None = None, drop: OwnerMark | None = None) -> None:
        """Set the owner mark to ``owner`` (None: keep it), add ``add``'s share mark, drop ``drop``'s, through
        ``plan.update`` (one PATCH guarded by the metageneration read; nothing when the bucket is gone).

        Raises:
            The SDK's errors (a 412 when the bucket changed since it was read).
        """
        bucket = self.storage.lookup_bucket(name, retry=storage_retry(), timeout=TIMEOUT)
        if bucket is None:
            return
        labels = live_labels(bucket)
        if owner is not None:
            labels.update(owner.fields("label"))
        if drop is not None:
            labels.pop(_share_key(drop), None)
        if add is not None:
            labels[_share_key(add)] = label_value(add.env)

        def patch() -> None:
            bucket.labels = labels
            bucket.patch(if_metageneration_match=bucket.metageneration, retry=storage_retry(), timeout=TIMEOUT)

        plan.update(self.kind, name, detail, patch)


class AccountMarks:
    """The marks of service accounts (in their description), read and changed through the IAM admin API."""

    kind = "service_account"

    def __init__(self, clients: GcsClients, by_email: bool) -> None:
        self.clients, self.by_email = clients, by_email

    def read(self, name: str) -> Marks | None:
        """The account's marks; None when it does not exist."""
        from provision.providers.gcp.credentials import read_service_account

        account = read_service_account(self.clients, name, self.by_email)
        return None if account is None else text_marks(account.description)

    def change(self, plan: Plan, name: str, detail: str, owner: OwnerMark | None = None,
               add: OwnerMark | None = None, drop: OwnerMark | None = None) -> None:
        """As `BucketMarks.change`, on the description (PatchServiceAccount; nothing when the account is gone or
        carries no owner mark)."""
        from provision.providers.gcp.credentials import read_service_account, sa_path

        account = read_service_account(self.clients, name, self.by_email)
        found = _DESCRIPTION.match(account.description or "") if account is not None else None
        if found is None:
            return
        marks = text_marks(account.description)
        sharers = [s for s in marks.sharers if drop is None or s.state != drop.state]
        if add is not None and not any(s.state == add.state for s in sharers):
            sharers.append(add)
        text = (owner or marks.owner or OwnerMark("?", "?", "?")).text()
        shares = "".join(f" shared={s.state}/{s.env}/{s.grant}" for s in sharers)
        description = f"{text}{shares}{found.group(3)}"[:256]
        path = sa_path(self.clients.project, name, self.by_email)
        plan.update(self.kind, name, detail, self.clients.iam().patch_service_account,
                    request={"service_account": {"name": path, "description": description},
                             "update_mask": {"paths": ["description"]}}, timeout=IAM_TIMEOUT)


def share(plan: Plan, state: Any, marker: Any, name: str, marks: Marks) -> None:
    """After adopting (``--adopt``) a resource another state marked as its own: add this state's share mark when
    missing, so that its creator's destroy hands it over instead of deleting it. Unmarked resources get none."""
    if marks.owner is None or ours(marks.owner, state) or marks.shared_by(state):
        return
    marker.change(plan, name, f"shared with provision env {state.env!r} (--adopt); its creator's destroy hands it "
                  "over", add=me(state))


def stays(marker: Any, state: Any, name: str) -> bool:
    """True when this state's destroy must leave the resource to another state (another state shares it, or it
    was handed over already); read-only."""
    marks = marker.read(name)
    return marks is not None and (marks.given_away(state) or bool(marks.heirs(state)))


def hand_over(plan: Plan, state: Any, marker: Any, name: str) -> bool:
    """Before deleting a resource this state created: when another state shares it, hand it over (the first
    sharer's owner mark replaces this one and its share mark goes) instead; when its owner mark already names
    another state, leave it.

    Returns:
        True when the resource must not be deleted by this state.
    """
    marks = marker.read(name)
    if marks is None:
        return False
    if marks.given_away(state):
        plan.note("no change", marker.kind, name, f"handed over to provision env {marks.owner.env!r}")
        return True
    heirs = marks.heirs(state)
    if not heirs:
        return False
    heir = heirs[0]
    marker.change(plan, name, f"handed over to provision env {heir.env!r} (grant {heir.grant!r}, it shares it); "
                  "not deleted", owner=heir, drop=heir)
    return True


def take_over(plan: Plan, state: Any, markers: dict[str, Any]) -> None:
    """Before a destroy: a bucket or service account this state adopted whose owner mark now names it (handed over
    by its creator's destroy) becomes this state's (recorded as created), so this destroy deletes it; so do the
    bindings of a service account taken over.

    Args:
        markers: resource kind -> `BucketMarks` / `AccountMarks` (a kind missing is skipped).
    """
    taken: set[str] = set()
    for r in list(state.resources):
        marker = markers.get(r.kind)
        if marker is None or r.created:
            continue
        marks = marker.read(r.name)
        if marks is not None and ours(marks.owner, state):
            plan.record(r.model_copy(update={"created": True}))
            plan.note("no change", r.kind, r.name, "handed over to this environment by its creator")
            if r.kind == "service_account":
                taken.add(f"serviceAccount:{r.name}")
    for r in list(state.resources):
        if r.kind == "bucket_binding" and not r.created and r.parent in taken:
            plan.record(r.model_copy(update={"created": True}))


def leave(plan: Plan, state: Any, markers: dict[str, Any]) -> None:
    """After a destroy: drop this state's share mark from the resources it adopted (it no longer uses them)."""
    for r in list(state.resources):
        marker = markers.get(r.kind)
        if marker is None or r.created:
            continue
        marks = marker.read(r.name)
        if marks is not None and marks.shared_by(state):
            marker.change(plan, r.name, f"no longer shared with provision env {state.env!r}", drop=me(state))
