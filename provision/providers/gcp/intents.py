"""Key intents: a service-account key or an HMAC key exists only in the answer that created it, so an answer lost
on the way back (a dropped connection, a 503 after the fact, a retry that creates a second key, a killed run)
would leave a live key no state knows. Before each create, an intent (``sa_key_intent`` / ``hmac_key_intent``,
named after the service account, with its UTC time in ``since``) is persisted; afterwards the account's keys are
listed and every key created at or after the intent that the state does not track is deleted and reported. A run
that dies in between leaves the intent in state: the next apply, or destroy, settles it the same way.

Listing: https://cloud.google.com/iam/docs/keys-list-get (``validAfterTime`` is the key's creation time) and
https://cloud.google.com/storage/docs/authentication/managing-hmackeys (``timeCreated``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from provision.ledger import Plan
from provision.models import Resource
from provision.providers.gcp.sdk import IAM_TIMEOUT, TIMEOUT, GcsClients, iam_retry, storage_retry

INTENT_KINDS = {"sa_key": "sa_key_intent", "hmac_key": "hmac_key_intent"}
"""Key kind -> the kind of its intent record."""
CLOCK_SKEW = timedelta(seconds=60)
"""How far Google's clock may be behind ours: when the keys that existed just before the create are known, a key
created up to this long before the intent's time still counts as created after it."""


def record_intent(plan: Plan, kind: str, email: str) -> None:
    """Persist the intent to create a key of ``kind`` (``sa_key`` | ``hmac_key``) for ``email`` now (UTC)."""
    plan.record(Resource(kind=INTENT_KINDS[kind], name=email, created=True, parent=email,
                         since=datetime.now(timezone.utc).replace(microsecond=0)))


def _utc(moment: Any) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):  # a protobuf Timestamp
        moment = moment.ToDatetime(tzinfo=timezone.utc) if hasattr(moment, "ToDatetime") else None
    if moment is None or moment == datetime(1970, 1, 1, tzinfo=timezone.utc):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def live_keys(clients: GcsClients, kind: str, email: str, by_email: bool) -> list[tuple[str, datetime | None]]:
    """The live keys of ``kind`` of the service account: (key id or HMAC access id, creation time UTC or None).

    Raises:
        The SDK's errors (a service account that is gone has no keys: an empty list).
    """
    from google.api_core.exceptions import NotFound

    from provision.providers.gcp.credentials import sa_path

    try:
        if kind == "sa_key":
            from google.cloud.iam_admin_v1 import types

            listed = clients.iam().list_service_account_keys(
                name=sa_path(clients.project, email, by_email),
                key_types=[types.ListServiceAccountKeysRequest.KeyType.USER_MANAGED], retry=iam_retry(),
                timeout=IAM_TIMEOUT)
            return [(k.name.rsplit("/", 1)[-1], _utc(k.valid_after_time)) for k in listed.keys]
        keys = clients.storage().list_hmac_keys(service_account_email=email, project_id=clients.project,
                                                retry=storage_retry(), timeout=TIMEOUT)
        return [(m.access_id, _utc(m.time_created)) for m in keys if m.state != "DELETED"]
    except NotFound:
        return []


def settle(clients: GcsClients, by_email: bool, state: Any, plan: Plan, kind: str, email: str,
           before: set[str] | None = None) -> list[str]:
    """Settle the pending intent of ``kind`` for ``email`` (nothing when there is none): delete every live key
    created at or after it that the state does not track, reporting each, then forget the intent.

    Args:
        before: the key ids listed just before the create, when this run listed them: those are never touched,
            and a key's time may then be up to `CLOCK_SKEW` before the intent's (Google's clock behind ours).
            None (an intent a killed run left): a key counts when created at or after the intent's time.

    Returns:
        The ids of the keys deleted.

    Raises:
        The SDK's errors (the intent then stays, for the next run).
    """
    from provision.providers.gcp.credentials import delete_key

    intent = state.find(INTENT_KINDS[kind], email)
    if intent is None:
        return []
    tracked = {r.name for r in state.resources if r.kind == kind}
    since = intent.since or datetime.now(timezone.utc)
    if before is not None:
        tracked |= before
        since -= CLOCK_SKEW
    untracked = [key for key, created in live_keys(clients, kind, email, by_email)
                 if key not in tracked and created is not None and created >= since]
    for key in untracked:
        plan.note("no change", kind, key, f"of {email}: created at/after the intent of "
                  f"{intent.since or since:%Y-%m-%dT%H:%M:%SZ}, untracked (its answer was lost)")
        delete_key(clients, by_email, state, Resource(kind=kind, name=key, created=True, parent=email), plan,
                   report=True)
    plan.forget(intent.kind, intent.name)
    return untracked


def settle_all(clients: GcsClients, by_email: bool, state: Any, plan: Plan) -> list[str]:
    """`settle` every pending intent of the state (a run killed between an intent and its settlement). Returns
    the ids of the keys deleted."""
    deleted: list[str] = []
    for kind, intent_kind in INTENT_KINDS.items():
        for intent in [r for r in state.resources if r.kind == intent_kind]:
            deleted += settle(clients, by_email, state, plan, kind, intent.name)
    return deleted
