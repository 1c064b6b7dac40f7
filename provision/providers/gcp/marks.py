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

The share and hand-over decisions are the cloud-independent ones of `provision.providers.owner_marks`; here only
`GcsMarks`, the Cloud Storage `provision.providers.owner_marks.MarkStore` (a share mark names a whole state:
``per_grant`` False), and `take_over`, which also takes over the bindings of a service account taken over.

A binding of a service account on a bucket has no mark of its own: it follows its service account (it stays while
the account stays, and is taken over with it).
"""

from __future__ import annotations

import re
from typing import Any

from provision.ledger import Plan
from provision.providers.gcp.sdk import IAM_TIMEOUT, TIMEOUT, GcsClients, storage_retry
from provision.providers.owner_marks import Marks, MarkStore, OwnerMark, Texts, label_value
from provision.providers.owner_marks import hand_over as hand_over  # the decisions, re-exported (on `GcsMarks`)
from provision.providers.owner_marks import leave as leave
from provision.providers.owner_marks import share as share
from provision.providers.owner_marks import stays as stays
from provision.providers.owner_marks import take_over as take_over_marked

SHARED_LABEL = "provision_shared_"
"""Key prefix of a bucket's share labels."""
_SHARE_TEXT = re.compile(r" shared=([0-9A-Za-z_-]+)/([A-Za-z0-9_.-]+)/([a-z0-9_-]+)")
_DESCRIPTION = re.compile(r"^(provision env=\S+ grant=\S+ state=[0-9A-Za-z_-]+)((?: shared=[^\s:]+)*)(.*)$", re.S)
MARKED_KINDS = ("bucket", "service_account")
"""Resource kinds that carry an owner mark."""
TEXTS = Texts(shared="shared with provision env {who.env!r} (--adopt); its creator's destroy hands it over",
              given_away="handed over to provision env {who.env!r}",
              taken_over="handed over to this environment by its creator")
"""The report lines of the share decisions on Google Cloud."""


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


class GcsMarks(MarkStore):
    """The marks of buckets (labels, through the admin's google-cloud-storage client) and of service accounts
    (their description, through the IAM admin API): the Google Cloud `MarkStore`.

    Args:
        storage: the admin's storage client (None: buckets are not marked here).
        clients: the SDK seam for service accounts (None: no service accounts, e.g. an IAM-less emulator).
        by_email: the service account was given by email.
    """

    per_grant = False
    texts = TEXTS

    def __init__(self, storage: Any = None, clients: GcsClients | None = None, by_email: bool = False) -> None:
        self.storage, self.clients, self.by_email = storage, clients, by_email
        self.kinds = tuple(k for k, on in zip(MARKED_KINDS, (storage, clients), strict=True) if on is not None)

    def read(self, kind: str, name: str) -> Marks | None:
        """The bucket's or account's marks; None when it does not exist.

        Raises:
            The SDK's errors other than "not found".
        """
        if kind == "bucket":
            bucket = self.storage.lookup_bucket(name, retry=storage_retry(), timeout=TIMEOUT)
            return None if bucket is None else label_marks(live_labels(bucket))
        from provision.providers.gcp.credentials import read_service_account

        account = read_service_account(self.clients, name, self.by_email)
        return None if account is None else text_marks(account.description)

    def write(self, plan: Plan, kind: str, name: str, detail: str, before: Marks, owner: OwnerMark | None = None,
              add: OwnerMark | None = None, drop: OwnerMark | None = None) -> None:
        """`MarkStore.write`, on what the resource holds now (re-read: ``before`` is not used; nothing when it is
        gone): a bucket's labels in one PATCH guarded by the metageneration read (a removed label sent as
        ``null``); an account's description with PatchServiceAccount (update mask ``description``; nothing when
        it carries no owner mark).

        Raises:
            The SDK's errors (a 412 when the bucket changed since it was read).
        """
        if kind == "bucket":
            self._write_labels(plan, name, detail, owner, add, drop)
        else:
            self._write_description(plan, name, detail, owner, add, drop)

    def _write_labels(self, plan: Plan, name: str, detail: str, owner: OwnerMark | None, add: OwnerMark | None,
                      drop: OwnerMark | None) -> None:
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

        plan.update("bucket", name, detail, patch)

    def _write_description(self, plan: Plan, name: str, detail: str, owner: OwnerMark | None,
                           add: OwnerMark | None, drop: OwnerMark | None) -> None:
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
        plan.update("service_account", name, detail, self.clients.iam().patch_service_account,
                    request={"service_account": {"name": path, "description": description},
                             "update_mask": {"paths": ["description"]}}, timeout=IAM_TIMEOUT)


def take_over(plan: Plan, state: Any, store: GcsMarks) -> None:
    """Before a destroy: `provision.providers.owner_marks.take_over` (a bucket or service account handed over to
    this state becomes its own), and the bindings of a service account taken over with it.

    Raises:
        The SDK's errors.
    """
    taken = {f"serviceAccount:{r.name}" for r in take_over_marked(plan, state, store) if r.kind == "service_account"}
    for r in list(state.resources):
        if r.kind == "bucket_binding" and not r.created and r.parent in taken:
            plan.record(r.model_copy(update={"created": True}))
