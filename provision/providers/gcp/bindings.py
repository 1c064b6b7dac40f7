"""Bucket IAM: bind the service account to exactly its roles on each bucket, and unbind it, by read-modify-write of
the bucket's policy (version 3), sending back the etag read so that a concurrent change is refused (412) and read
again rather than overwritten. Source: https://cloud.google.com/storage/docs/access-control/using-iam-permissions
and https://cloud.google.com/iam/docs/policies#etag.
"""

from __future__ import annotations

import os
import time
from typing import Any

from provision.errors import CloudRefused
from provision.ledger import Plan
from provision.models import Access, Resource
from provision.policies import GCS_ROLES, gcs_bindings, merge_bindings
from provision.providers.gcp.sdk import TIMEOUT, storage_retry

PROPAGATION_SECONDS = float(os.environ.get("PROVISION_PROBE_TIMEOUT", "90"))
"""Seconds to keep retrying a bucket binding whose new service account IAM does not know yet (eventually
consistent); ``$PROVISION_PROBE_TIMEOUT`` overrides it."""
POLICY_ATTEMPTS = 5
"""Read-modify-write attempts on a bucket's IAM policy when its etag changed under us (412 / 409)."""


def _stale() -> tuple[type[BaseException], ...]:
    """The answers to a policy write whose etag is no longer current."""
    from google.api_core.exceptions import Conflict, PreconditionFailed

    return (PreconditionFailed, Conflict)


def _kept_changing(name: str, hint: str) -> CloudRefused:
    return CloudRefused(f"the IAM policy of bucket {name!r} kept changing while it was updated", hint)


def _read(bucket: Any) -> Any:
    return bucket.get_iam_policy(requested_policy_version=3, retry=storage_retry(), timeout=TIMEOUT)


def _rewrite(policy: Any, bindings: list[dict[str, object]]) -> Any:
    policy.bindings = bindings
    policy.version = 3
    return policy


def binding_detail(access: Access, member: str) -> str:
    """How a binding is reported: ``serviceAccount:<email>: objectViewer + legacyBucketReader``."""
    return f"{member}: {' + '.join(r.removeprefix('roles/storage.') for r in GCS_ROLES[access])}"


def ensure_binding(storage: Any, name: str, email: str, access: Access, new_sa: bool, state: Any,
                   plan: Plan) -> None:
    """Make the service account hold exactly the roles of ``access`` on bucket ``name``
    (`provision.policies.gcs_bindings`, merged with `provision.policies.merge_bindings`); every other member and
    every conditional binding stay as they are.

    The binding is recorded (``bucket_binding``, ``created`` when the member was not on the bucket before) before
    the write. A write refused with 412/409 (the policy changed since it was read) is read again, up to
    `POLICY_ATTEMPTS` times; a write refused with 400 "does not exist" for a service account this run created is
    retried with back-off (1 s doubling to 8 s) for up to `PROPAGATION_SECONDS`, until IAM knows the account.

    Args:
        storage: the admin's client. name: the bucket. email: the service account. access: the grant's level.
        new_sa: the account was created by this run. state: the grant's record (read). plan: the ledger.

    Raises:
        CloudRefused: the policy kept changing. The SDK's errors otherwise (the record of a binding that was not
            made is forgotten first).
    """
    from google.api_core.exceptions import BadRequest, NotFound

    member = f"serviceAccount:{email}"
    detail = binding_detail(access, member)
    bucket = storage.bucket(name)
    deadline = time.monotonic() + PROPAGATION_SECONDS
    delay = 1.0
    attempts = 0
    while True:
        try:
            policy = _read(bucket)
        except NotFound:
            if plan.planned("bucket", name):  # the bucket would be created first: so would its binding
                plan.update("bucket_binding", name, detail, lambda: None)
                return
            raise
        current = [dict(b) for b in policy.bindings]
        had_member = any(member in b.get("members", ()) for b in current)
        merged, changed = merge_bindings(current, gcs_bindings(access, member), drop_member=member)
        if not changed:
            plan.note("no change", "bucket_binding", name, detail)
            if state.find("bucket_binding", name) is None:
                plan.record(Resource(kind="bucket_binding", name=name, created=False, parent=member))
            return
        if not had_member:
            plan.record(Resource(kind="bucket_binding", name=name, created=True, parent=member))
        try:
            plan.update("bucket_binding", name, detail if not had_member else f"now {detail}",
                        bucket.set_iam_policy, policy=_rewrite(policy, merged), retry=None, timeout=TIMEOUT)
            return
        except _stale():  # the policy changed since we read it: read again
            attempts += 1
            if attempts >= POLICY_ATTEMPTS:
                raise _kept_changing(name, "re-run the command") from None
        except BadRequest as exc:
            fresh = new_sa and "does not exist" in str(exc)
            if not fresh or time.monotonic() + delay > deadline:
                if not had_member:
                    plan.forget("bucket_binding", name)
                raise
            time.sleep(delay)  # IAM has not propagated the new service account yet
            delay = min(delay * 2, 8.0)


def unbind(storage: Any, name: str, member: str, plan: Plan) -> None:
    """Remove ``member`` from the unconditional bindings of bucket ``name``, leaving every other member (read again
    when the etag changed under us, up to `POLICY_ATTEMPTS` times); a member already gone is reported as such.

    Raises:
        CloudRefused: the policy kept changing. google.api_core.exceptions.NotFound: the bucket is gone.
    """
    bucket = storage.bucket(name)
    for _ in range(POLICY_ATTEMPTS):
        policy = _read(bucket)
        merged, changed = merge_bindings([dict(b) for b in policy.bindings], [], drop_member=member)
        if not changed:
            plan.note("no change", "bucket_binding", name, f"{member} already removed")
            return
        try:
            plan.delete("bucket_binding", name, f"remove {member}", bucket.set_iam_policy,
                        policy=_rewrite(policy, merged), retry=None, timeout=TIMEOUT)
            return
        except _stale():
            continue
    raise _kept_changing(name, "run destroy again")
