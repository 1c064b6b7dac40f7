"""Access keys of the grant's IAM user: the stored one, a rotation, or a new one, issued so that none is ever left
live and untracked.

IAM's rules relied on here: a user holds at most 2 access keys
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html); a new key is eventually consistent
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency),
so it is probed until S3 accepts it.

Key intents: before CreateAccessKey an ``access_key_intent`` record (name: the user; ``since``: IAM's own clock,
the ``Date`` of its answer to the ListAccessKeys made just before, to the second) is persisted. After the answer
the key is recorded and the intent settled: a key that was not there before and that the state does not know
came from a retried request whose first answer was lost. A run that never heard the answer (a kill) leaves the
intent behind: the next run, or ``destroy``, lists the user's keys and deletes every key created at or after
the intent that the state does not know (its secret was never stored, so nothing can be using it).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from provision.errors import CloudRefused, PartialFailure
from provision.ledger import Plan
from provision.models import KeyPair, Resource
from provision.providers.aws.sdk import answered_errors, error_code

if TYPE_CHECKING:
    from provision.providers.aws.provider import AwsProvider

PROBE_TIMEOUT = float(os.environ.get("PROVISION_PROBE_TIMEOUT", "90"))
"""Seconds to keep probing a new access key before giving up (IAM is eventually consistent)."""
NOT_YET = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidClientTokenId", "403")
"""Error codes a new key gets while IAM has not propagated it yet."""
INTENT = "access_key_intent"
"""Resource kind of a key intent (see the module docstring)."""
UNTRACKED = "untracked key from an interrupted run (its secret was never stored)"


def _key_pair(answer: dict[str, Any]) -> KeyPair:
    return KeyPair(access_key=answer["AccessKey"]["AccessKeyId"], secret_key=answer["AccessKey"]["SecretAccessKey"])


def _keys(iam: Any, user: str) -> tuple[list[dict[str, Any]], datetime | None]:
    """The user's keys (none when the user is gone) and IAM's time of the answer (its ``Date`` header, whole
    seconds, UTC; None when absent)."""
    try:
        answer = iam.list_access_keys(UserName=user)
    except answered_errors() as exc:
        if error_code(exc) == "NoSuchEntity":
            return [], None
        raise
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return list(answer["AccessKeyMetadata"]), parsedate_to_datetime(date) if date else None


def settle_intent(iam: Any, plan: Plan, state: Any, intent: Resource, before: set[str] | None = None) -> None:
    """Delete the keys of ``intent``'s user that the state does not record and that were created at or after the
    intent (or, when ``before`` is given, that are not in it), reported as "untracked key from an interrupted
    run"; then drop the intent.

    Args:
        iam: an admin IAM client. plan: the ledger. state: the grant record. intent: an `INTENT` record (its
            ``since`` None: the user had no key before, every unknown key is the intent's).
        before: the key ids the user had just before the create (known in the run that made it).
    """
    since = intent.since or datetime.min.replace(tzinfo=timezone.utc)
    for key in _keys(iam, intent.name)[0]:
        created = key["CreateDate"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        if state.find("access_key", key["AccessKeyId"]) is not None:
            continue
        if (key["AccessKeyId"] not in before) if before is not None else created >= since:
            delete_key(iam, plan, intent.name, key["AccessKeyId"], UNTRACKED)
    plan.forget(INTENT, intent.name)


def settle_intents(iam: Any, plan: Plan, state: Any) -> None:
    """`settle_intent` for every intent the state holds."""
    for intent in [r for r in state.resources if r.kind == INTENT]:
        settle_intent(iam, plan, state, intent)


def ensure_key(aws: AwsProvider, iam: Any, state: Any, plan: Plan, user: str, new: bool, sweep: bool) -> KeyPair | None:
    """The user's access key: the stored one while IAM still has it (unless ``plan.rotate``), else a new one,
    issued under an intent, stored with its Grant at once and probed until IAM accepts it. On rotation the old
    key is deleted later (`Plan.defer`).

    Args:
        aws: the provider. iam: an admin IAM client. state: the grant record. plan: the ledger. user: the user.
        new: the user was created by this run (it has no keys). sweep: `provision` created the user and nobody
            shares it: any key the state does not know is deleted (``status`` reports it as extra).

    Returns:
        The key; None in a dry run when a new key would be issued.

    Raises:
        CloudRefused: the user already has 2 keys and neither is the stored one.
        PartialFailure: the new key is still refused after `PROBE_TIMEOUT` seconds.
    """
    settle_intents(iam, plan, state)
    stored = state.grant.auth if state.grant and isinstance(state.grant.auth, KeyPair) else None
    keys, now = ([], None) if new else _keys(iam, user)
    if sweep:
        known = {r.name for r in state.resources if r.kind == "access_key"} | ({stored.access_key} if stored else set())
        for key in [k for k in keys if k["AccessKeyId"] not in known and not plan.deleted(k["AccessKeyId"])]:
            delete_key(iam, plan, user, key["AccessKeyId"], "untracked key (not in the state; its secret is "
                       "unknown here)")
    keys = [k for k in keys if not plan.deleted(k["AccessKeyId"])]
    rotating = False
    if stored is not None and any(k["AccessKeyId"] == stored.access_key for k in keys):
        if not plan.rotate:
            plan.note("no change", "access_key", stored.access_key, f"of {user}")
            return stored
        rotating = True
    if len(keys) >= 2:
        raise CloudRefused(
            f"IAM user {user!r} already has 2 access keys, the IAM limit, and none of them is in the state file",
            "delete one it does not need, or pass another --user",
        )

    def keep(answer: dict[str, Any]) -> tuple[Resource, Any]:  # the secret exists only in this answer
        key = _key_pair(answer)
        return Resource(kind="access_key", name=key.access_key, created=True, parent=user), aws.grant(key)

    since = None if new else (now or datetime.now(timezone.utc)).replace(microsecond=0)
    intent = Resource(kind=INTENT, name=user, created=True, parent=user, since=since)
    plan.record(intent)
    detail = "rotation: new access key" if rotating else "new access key (probed until IAM accepts it)"
    answer = plan.issue("access_key", user, detail, iam.create_access_key, keep, UserName=user)
    if answer is not None:  # a retried create (its first answer lost) may have made a key we never saw
        settle_intent(iam, plan, state, intent, before={k["AccessKeyId"] for k in keys})
    if rotating and stored is not None:
        plan.defer("delete", "access_key", stored.access_key, "the old key, once the new one works and the "
                   "rendered files hold it", delete_key, iam=iam, plan=plan, user=user, key_id=stored.access_key)
    if answer is None:
        return None
    key = _key_pair(answer)
    wait_for_key(aws.client("s3", key), aws.buckets[0])
    return key


def delete_key(iam: Any, plan: Plan, user: str, key_id: str, detail: str | None = None) -> None:
    """Delete access key ``key_id`` of ``user`` (already gone counts as deleted) and forget it in the state.

    Args:
        iam: an admin IAM client. plan: the ledger. user: the key's user. key_id: the access key id.
        detail: the report's text, when the deletion is reported (None: not reported, e.g. a deferred delete
            already noted).
    """
    try:
        if detail is None:
            iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        else:
            plan.delete("access_key", key_id, f"of {user}: {detail}", iam.delete_access_key, UserName=user,
                        AccessKeyId=key_id)
    except answered_errors() as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    plan.forget("access_key", key_id)


def wait_for_key(s3: Any, bucket: str) -> None:
    """Probe a new key with ListObjectsV2 (MaxKeys=1) on ``bucket``, backing off from 0.5 s to 8 s, until IAM
    accepts it.

    Args:
        s3: an S3 client with the new key.
        bucket: one of the grant's buckets.

    Raises:
        PartialFailure: still refused after `PROBE_TIMEOUT` seconds (the key is recorded in state).
    """
    delay, deadline = 0.5, time.monotonic() + PROBE_TIMEOUT
    while True:
        try:
            s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
            return
        except answered_errors() as exc:
            code = error_code(exc)
            if code not in NOT_YET or time.monotonic() + delay > deadline:
                raise PartialFailure(
                    f"the new access key still fails after {PROBE_TIMEOUT:.0f} s ({code})",
                    "it is recorded in state; run `provision verify` later",
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 8.0)
