"""The grant's IAM identity: a user with an inline policy and an access key, or (IAM-role mode) a role trusted
by EC2 with an inline policy and an instance profile of the same name.

IAM's rules relied on here: a user holds at most 2 access keys
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html); a new key is eventually consistent
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency),
so it is probed until S3 accepts it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.errors import CloudRefused, PartialFailure
from provision.ledger import Plan
from provision.models import KeyPair, Resource, Role
from provision.policies import ec2_trust_policy, policy_json, s3_policy, same_policy
from provision.providers.aws.sdk import answered_errors, error_code

if TYPE_CHECKING:
    from provision.providers.aws.provider import AwsProvider

PROBE_TIMEOUT = float(os.environ.get("PROVISION_PROBE_TIMEOUT", "90"))
"""Seconds to keep probing a new access key before giving up (IAM is eventually consistent)."""
NOT_YET = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidClientTokenId", "403")
"""Error codes a new key gets while IAM has not propagated it yet."""
POLICY_NAME = "provision-buckets"
"""Name of the inline policy on the user or role."""


def get_or_none(call: Callable[..., Any], **kwargs: Any) -> Any:
    """The IAM read's response, or None when IAM answers ``NoSuchEntity``."""
    try:
        return call(**kwargs)
    except answered_errors() as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


def ensure_policy(aws: AwsProvider, plan: Plan, kind: str, owner: str, new_owner: bool, get: Callable[..., Any],
                  put: Callable[..., Any], owner_arg: str) -> None:
    """Create, update or keep the inline policy `POLICY_NAME` of ``owner`` (the profile's buckets and access).

    Args:
        aws: the provider (buckets, access). plan: the ledger.
        kind: ``user_policy`` | ``role_policy``. owner: the user or role. new_owner: created by this run.
        get, put: IAM's Get/Put{User,Role}Policy. owner_arg: ``UserName`` | ``RoleName``.
    """
    desired = s3_policy(aws.buckets, aws.profile.access)
    shown = f"{owner}/{POLICY_NAME}"
    current = None if new_owner else get_or_none(get, **{owner_arg: owner, "PolicyName": POLICY_NAME})
    what = f"{aws.profile.access.value} on {', '.join(aws.buckets)}"
    kwargs = {owner_arg: owner, "PolicyName": POLICY_NAME, "PolicyDocument": policy_json(desired)}
    resource = Resource(kind=kind, name=POLICY_NAME, created=True, parent=owner)
    if current is None:
        plan.create(resource, what, put, answered_errors(), shown=shown, **kwargs)
        return
    if not same_policy(current["PolicyDocument"], desired):
        plan.update(kind, shown, f"now {what}", put, **kwargs)
    else:
        plan.note("no change", kind, shown, what)
    if plan.state.find(kind, POLICY_NAME) is None:
        plan.record(resource)  # ours even on an adopted owner: destroy removes it


def _key_pair(answer: dict[str, Any]) -> KeyPair:
    return KeyPair(access_key=answer["AccessKey"]["AccessKeyId"], secret_key=answer["AccessKey"]["SecretAccessKey"])


def ensure_user_and_key(aws: AwsProvider, iam: Any, state: Any, plan: Plan) -> KeyPair | None:
    """The IAM user (created or adopted), its inline policy, and an access key: the stored one while IAM still
    has it (unless ``plan.rotate``), else a new one, stored with its Grant at once and probed until IAM accepts it.
    On rotation the old key is deleted later (`Plan.defer`).

    Returns:
        The key; None in a dry run when a new key would be issued.

    Raises:
        CloudRefused: the user already has 2 keys and neither is the stored one.
        PartialFailure: the new key is still refused after `PROBE_TIMEOUT` seconds.
    """
    user = aws.user
    tags = [{"Key": "provision:env", "Value": state.env}]
    new = get_or_none(iam.get_user, UserName=user) is None
    if new:
        plan.create(Resource(kind="iam_user", name=user, created=True), "IAM user", iam.create_user,
                    answered_errors(), UserName=user, Tags=tags)
    elif not plan.adopt(Resource(kind="iam_user", name=user, created=False)):
        plan.note("no change", "iam_user", user, "IAM user")
    ensure_policy(aws, plan, "user_policy", user, new, iam.get_user_policy, iam.put_user_policy, "UserName")

    stored = state.grant.auth if state.grant and isinstance(state.grant.auth, KeyPair) else None
    keys = [] if new else iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
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

    detail = "rotation: new access key" if rotating else "new access key (probed until IAM accepts it)"
    answer = plan.issue("access_key", user, detail, iam.create_access_key, keep, UserName=user)
    if rotating and stored is not None:
        plan.defer("delete", "access_key", stored.access_key, "the old key, once the new one works and the "
                   "rendered files hold it", delete_key, iam=iam, plan=plan, user=user, key_id=stored.access_key)
    if answer is None:
        return None
    key = _key_pair(answer)
    wait_for_key(aws.client("s3", key), aws.buckets[0])
    return key


def delete_key(iam: Any, plan: Plan, user: str, key_id: str) -> None:
    """Delete access key ``key_id`` of ``user`` (already gone counts as deleted) and forget it in the state."""
    try:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
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


def ensure_role(aws: AwsProvider, iam: Any, role: str, state: Any, plan: Plan) -> Role:
    """IAM-role mode: the role (trusted by ``ec2.amazonaws.com`` only), its inline policy, and an instance
    profile of the same name holding it (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2_instance-profiles.html).

    Returns:
        The `Role` auth of the Grant (no secret).
    """
    trust = ec2_trust_policy()
    current = get_or_none(iam.get_role, RoleName=role)
    tags = [{"Key": "provision:env", "Value": state.env}]
    if current is None:
        plan.create(Resource(kind="iam_role", name=role, created=True), "trusted by ec2.amazonaws.com",
                    iam.create_role, answered_errors(), RoleName=role, AssumeRolePolicyDocument=policy_json(trust),
                    Tags=tags)
    else:
        if not plan.adopt(Resource(kind="iam_role", name=role, created=False)):
            plan.note("no change", "iam_role", role, "trusted by ec2.amazonaws.com")
        if not same_policy(current["Role"]["AssumeRolePolicyDocument"], trust):
            plan.update("iam_role", role, "trust policy: ec2.amazonaws.com only", iam.update_assume_role_policy,
                        RoleName=role, PolicyDocument=policy_json(trust))
    ensure_policy(aws, plan, "role_policy", role, current is None, iam.get_role_policy, iam.put_role_policy,
                  "RoleName")
    profile = get_or_none(iam.get_instance_profile, InstanceProfileName=role)
    if profile is None:
        plan.create(Resource(kind="instance_profile", name=role, created=True), f"holding role {role}",
                    iam.create_instance_profile, answered_errors(), InstanceProfileName=role, Tags=tags)
        roles: list[str] = []
    else:
        plan.adopt(Resource(kind="instance_profile", name=role, created=False), "exists; adopted")
        roles = [r["RoleName"] for r in profile["InstanceProfile"].get("Roles", [])]
    if role not in roles:
        plan.update("instance_profile", role, f"add role {role}", iam.add_role_to_instance_profile,
                    InstanceProfileName=role, RoleName=role)
    elif current is not None:
        plan.note("no change", "instance_profile", role, f"holds role {role}")
    return Role(role_name=role)
