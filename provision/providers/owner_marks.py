"""Owner marks: what `provision` writes on every resource it creates (a tag, metadata, a label, a line of a
description) naming the environment, the grant and the state's random id, so that another state never adopts it
unknowingly and a re-run recognises what its own earlier run created even when the answer was lost; and share
marks, with which a resource adopted by another state (``--adopt``) is handed over on its creator's destroy
instead of being deleted under its other user.

One provider-neutral shape (`OwnerMark`) written in three styles: ``tag`` (Azure resource tags,
``provision:env``), ``meta`` (Azure container metadata, ``provisionenv``: names must be C# identifiers,
https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata, and
travel as ``x-ms-meta-<name>`` headers, which proxies that drop or rewrite underscores in header names break, so
the names have none), and
``label`` (Cloud Storage bucket labels: keys and values of lowercase letters, digits, ``_`` and ``-``, at most 63
characters: https://cloud.google.com/storage/docs/tags-and-labels).

The share and hand-over decisions are here, once, for every cloud (`share`, `stays`, `hand_over`, `take_over`,
`leave`); each provider only says how its marks are read and written on its resource kinds (a `MarkStore`:
``providers/aws/marks.py`` on S3 and IAM tags, ``providers/azure/marks.py`` on container metadata and ARM tags,
``providers/gcp/marks.py`` on bucket labels and service-account descriptions).

- destroy of the creator: a resource with sharers gets the first sharer's owner mark and loses that sharer's share
  mark (`hand_over`); one whose owner mark already names another state is left alone.
- destroy of a sharer: a resource whose owner mark now names it (handed over) is recorded as created and deleted
  (`take_over`); afterwards its share marks are dropped from what it adopted (`leave`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from provision.errors import BadInput

if TYPE_CHECKING:
    from provision.ledger import Plan
    from provision.models import Resource

Style = Literal["tag", "meta", "label"]
_SEPARATOR = {"tag": ":", "meta": "", "label": "_"}
_FIELDS = ("env", "grant", "state")
_LABEL_VALUE = re.compile(r"[^a-z0-9_-]+")
_TEXT = re.compile(r"provision env=(\S+) grant=(\S+) state=([0-9A-Za-z_-]+)")


def label_value(text: str) -> str:
    """``text`` as a Cloud Storage label value: lower-cased, every run of other characters replaced by ``-``,
    cut to 63 characters (https://cloud.google.com/storage/docs/tags-and-labels)."""
    return _LABEL_VALUE.sub("-", text.lower())[:63]


@dataclass(frozen=True)
class OwnerMark:
    """Who created (or shares) a resource.

    Attributes:
        env: the environment's name. grant: the grant's name (empty in an AWS mark written by an older version,
            which named the env alone). state: the state's random id (`GrantState.state_id`; empty likewise).
    """

    env: str
    grant: str = ""
    state: str = ""

    @classmethod
    def of(cls, state: Any) -> OwnerMark:
        """The mark of a grant's record (``env``, ``name``, ``state_id``)."""
        return cls(str(getattr(state, "env", "") or ""), str(getattr(state, "name", "") or ""),
                   str(getattr(state, "state_id", "") or ""))

    @property
    def named(self) -> str:
        """``env 'E', grant 'G'`` (``env 'E'`` when the mark names no grant), for report lines."""
        return f"env {self.env!r}, grant {self.grant!r}" if self.grant else f"env {self.env!r}"

    def names(self, who: OwnerMark, per_grant: bool = True) -> bool:
        """True when this mark names ``who``: the same state id and, when ``per_grant``, the same grant."""
        return self.state == who.state and (not per_grant or self.grant == who.grant)

    def fields(self, style: Style) -> dict[str, str]:
        """The mark as key/value pairs of ``style`` (``provision:env`` / ``provisionenv`` / ``provision_env``);
        label values sanitized (`label_value`). Empty when the state has no id (nothing to recognise it by)."""
        if not self.state:
            return {}
        values = (self.env, self.grant, self.state)
        if style == "label":
            values = tuple(label_value(v) for v in values)
        return {f"provision{_SEPARATOR[style]}{k}": v for k, v in zip(_FIELDS, values, strict=True)}

    def text(self) -> str:
        """The mark as a line of text (a service account's description): ``provision env=E grant=G state=S``."""
        return f"provision env={self.env} grant={self.grant} state={self.state}"

    @classmethod
    def read(cls, found: dict[str, str] | None, style: Style) -> OwnerMark | None:
        """The mark in a resource's tags / metadata / labels (keys compared case-insensitively: Azure returns
        metadata names lower-cased), or None when it carries none."""
        low = {str(k).lower(): str(v) for k, v in (found or {}).items()}
        values = [low.get(f"provision{_SEPARATOR[style]}{k}") for k in _FIELDS]
        if not values[2]:
            return None
        return cls(values[0] or "?", values[1] or "?", values[2])

    @classmethod
    def parse(cls, text: str | None) -> OwnerMark | None:
        """The mark in a description written with `text`, or None."""
        match = _TEXT.search(text or "")
        return cls(*match.groups()) if match else None


def ours(found: OwnerMark | None, state: Any) -> bool:
    """True when ``found`` names this state (its random id): an earlier run of it created the resource."""
    return found is not None and bool(getattr(state, "state_id", "")) and found.state == state.state_id


def check_adoptable(kind: str, name: str, found: OwnerMark | None, state: Any, adopt: bool) -> None:
    """Refuse to adopt a resource another state marked as its own, unless ``adopt`` (``--adopt``).

    Raises:
        BadInput: ``found`` names another state (its env and grant), ``adopt`` is False.
    """
    if found is None or ours(found, state) or adopt:
        return
    raise BadInput(f"{kind} {name!r} belongs to provision environment {found.env!r} (grant {found.grant!r}, "
                   f"state {found.state})", "pass --adopt to use it anyway (destroy leaves it to its owner), or "
                   "choose other names")


# ---- sharing and handing over ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marks:
    """The marks on one resource: its owner (None: unmarked) and the states sharing it, in their stored order.

    Attributes:
        owner: the owner mark. sharers: one `OwnerMark` per share mark.
        raw: what the store read them from (tags, metadata; None where the store re-reads before a write), handed
            back to `MarkStore.write` so that a write that replaces the whole set can merge without a second read.
    """

    owner: OwnerMark | None
    sharers: tuple[OwnerMark, ...] = ()
    raw: Any = field(default=None, compare=False)

    def heirs(self, me: OwnerMark, per_grant: bool = True) -> list[OwnerMark]:
        """The sharers other than ``me`` (`OwnerMark.names`), in order."""
        return [s for s in self.sharers if not s.names(me, per_grant)]

    def given_away(self, me: OwnerMark) -> bool:
        """Its owner mark names another state than ``me`` (an earlier, possibly interrupted, destroy handed it
        over). A mark with no state id (an older AWS mark naming an env alone) is not another's."""
        return self.owner is not None and bool(self.owner.state) and self.owner.state != me.state

    def shared_by(self, me: OwnerMark, per_grant: bool = True) -> bool:
        """``me`` has a share mark on it."""
        return any(s.names(me, per_grant) for s in self.sharers)


@dataclass(frozen=True)
class Texts:
    """The report lines of the share decisions; ``{who}`` is an `OwnerMark` (the sharer, heir or owner named).

    Attributes:
        shared: a share mark added (`share`). given_away: its owner mark already names another state
            (`hand_over`). handed_over: handed to the first sharer (`hand_over`). taken_over: recorded as created
            (`take_over`). left: the share mark dropped (`leave`).
    """

    shared: str = "shared with provision env {who.env!r} (grant {who.grant!r}): its creator's destroy hands it over"
    given_away: str = "handed over to provision env {who.env!r} (grant {who.grant!r})"
    handed_over: str = "handed over to provision env {who.env!r} (grant {who.grant!r}, it shares it); not deleted"
    taken_over: str = "handed over to this grant by its creator"
    left: str = "no longer shared with provision env {who.env!r}"


class MarkStore(ABC):
    """How one cloud reads and writes owner and share marks on its marked resource kinds (the adapter the
    decisions below work through).

    Attributes:
        kinds: the resource kinds that carry marks (others are never read).
        per_grant: a share mark names a grant (True), or a whole state (False: Cloud Storage, whose service-account
            descriptions keep one share entry per state).
        texts: the report lines (`Texts`).
    """

    kinds: tuple[str, ...] = ()
    per_grant: bool = True
    texts: Texts = Texts()

    @abstractmethod
    def read(self, kind: str, name: str) -> Marks | None:
        """The resource's marks (``Marks(None)`` when unmarked); None when it does not exist.

        Raises:
            The cloud SDK's errors other than "not found".
        """

    @abstractmethod
    def write(self, plan: Plan, kind: str, name: str, detail: str, before: Marks, owner: OwnerMark | None = None,
              add: OwnerMark | None = None, drop: OwnerMark | None = None) -> None:
        """Set the owner mark to ``owner`` (None: keep it), add ``add``'s share mark, drop ``drop``'s, through
        ``plan.update`` (``detail``: the report line). ``before``: what `read` returned just before.

        Raises:
            The cloud SDK's errors.
        """


def share(plan: Plan, state: Any, store: MarkStore, kind: str, name: str, marks: Marks) -> None:
    """After adopting (``--adopt``) a resource another state marked as its own (``marks``, as read): add this
    grant's share mark (once), so that its creator's destroy hands it over instead of deleting it. Nothing for an
    unmarked resource or one of this state's own.

    Raises:
        The store's errors.
    """
    me = OwnerMark.of(state)
    if marks.owner is None or not me.state or marks.owner.state == me.state or marks.shared_by(me, store.per_grant):
        return
    store.write(plan, kind, name, store.texts.shared.format(who=me), marks, add=me)


def stays(store: MarkStore, state: Any, kind: str, name: str) -> bool:
    """True when this state's destroy must leave the resource to another state (another state shares it, or it
    was handed over already); read-only. False for a kind the store does not mark, or a resource that is gone."""
    if kind not in store.kinds:
        return False
    marks = store.read(kind, name)
    me = OwnerMark.of(state)
    return marks is not None and (marks.given_away(me) or bool(marks.heirs(me, store.per_grant)))


def hand_over(plan: Plan, state: Any, store: MarkStore, kind: str, name: str) -> bool:
    """Before deleting a resource this state created: when another state shares it (``--adopt``), hand it over
    (the first sharer's owner mark replaces this one and its share mark goes) instead of deleting it; when its
    owner mark already names another state (an earlier, interrupted destroy handed it over), leave it.

    Returns:
        True when this state must not delete it.

    Raises:
        The store's errors.
    """
    if kind not in store.kinds:
        return False
    marks = store.read(kind, name)
    if marks is None:
        return False
    me = OwnerMark.of(state)
    if marks.given_away(me):
        plan.note("no change", kind, name, store.texts.given_away.format(who=marks.owner))
        return True
    heirs = marks.heirs(me, store.per_grant)
    if not heirs:
        return False
    heir = heirs[0]
    store.write(plan, kind, name, store.texts.handed_over.format(who=heir), marks, owner=heir, drop=heir)
    return True


def take_over(plan: Plan, state: Any, store: MarkStore) -> list[Resource]:
    """Before a destroy: a resource this state adopted whose owner mark now names it (its creator's destroy handed
    it over) is recorded as created, so this destroy deletes it.

    Returns:
        The records taken over (as they were, ``created`` False).

    Raises:
        The store's errors.
    """
    me = OwnerMark.of(state)
    taken = []
    for r in list(state.resources):
        if r.kind in store.kinds and not r.created:
            marks = store.read(r.kind, r.name)
            if marks is not None and marks.owner is not None and marks.owner.names(me, store.per_grant):
                plan.record(r.model_copy(update={"created": True}))
                plan.note("no change", r.kind, r.name, store.texts.taken_over)
                taken.append(r)
    return taken


def leave(plan: Plan, state: Any, store: MarkStore) -> None:
    """After a destroy: drop this grant's share mark from the resources it adopted (it no longer uses them).

    Raises:
        The store's errors.
    """
    me = OwnerMark.of(state)
    for r in list(state.resources):
        if r.kind in store.kinds and not r.created:
            marks = store.read(r.kind, r.name)
            if marks is not None and marks.shared_by(me, store.per_grant):
                store.write(plan, r.kind, r.name, store.texts.left.format(who=me), marks, drop=me)
