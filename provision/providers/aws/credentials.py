"""The grant's IAM identity: a user with an inline policy and an access key (`provision.providers.aws.keys`), or
(IAM-role mode) a role trusted by EC2 with an inline policy and an instance profile of the same name. What
`provision` creates carries its owner mark (`provision.providers.aws.marks`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.ledger import Plan
from provision.models import KeyPair, Resource, Role
from provision.policies import ec2_trust_policy, policy_json, s3_policy, same_policy
from provision.providers.aws.keys import ensure_key
from provision.providers.aws.marks import Tags, check_claim, iam_tags, is_mine, mark, owner, settle, sharers
from provision.providers.aws.sdk import answered_errors, error_code

if TYPE_CHECKING:
    from provision.providers.aws.provider import AwsProvider

LEGACY_POLICY_NAME = "provision-buckets"
"""The inline policy's name before it named its env and grant (two envs sharing a user shared it)."""
POLICY_NAME_LIMIT = 128
"""IAM's limit on an inline policy name (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html)."""


def policy_name(state: Any) -> str:
    """The inline policy's name for the grant ``state``: ``provision-<env>-<grant>``, so two environments (or two
    grants) on one user or role never share one; over IAM's 128 characters it is cut and ends with a short
    hash of the full name. Env and grant names only hold characters IAM allows in a policy name (``[\\w+=,.@-]``).
    """
    name = f"provision-{state.env}-{state.name}"
    if len(name) <= POLICY_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:POLICY_NAME_LIMIT - 11]}-{digest}"


def get_or_none(call: Callable[..., Any], **kwargs: Any) -> Any:
    """The IAM read's response, or None when IAM answers ``NoSuchEntity``."""
    try:
        return call(**kwargs)
    except answered_errors() as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


def survey(aws: AwsProvider, tagger: Tags, state: Any) -> dict[Any, Any]:
    """Read the IAM identity (the user, or the role and its instance profile) before anything changes and refuse
    one another provision state marked as its own (without ``--adopt``). Makes no mutating request.

    Returns:
        ``{(kind, name): tags}`` (tags None when it does not exist).

    Raises:
        BadInput: see `provision.providers.aws.marks.check_claim`.
    """
    wanted = [("iam_role", aws.role), ("instance_profile", aws.role)] if aws.role else [("iam_user", aws.user)]
    found: dict[Any, Any] = {}
    for kind, name in wanted:
        found[(kind, name)] = tags = tagger.tags(kind, name)
        check_claim(state, aws.profile.adopt, kind, name, tags)
    return found


def ensure_identity(plan: Plan, state: Any, tagger: Tags, kind: str, name: str, tags: dict[str, str] | None,
                    detail: str, create: Callable[..., Any], **kwargs: Any) -> bool:
    """Create the IAM user, role or instance profile ``name`` carrying the owner mark (``Tags=`` at create), or
    settle the existing one (`provision.providers.aws.marks.settle`).

    A create whose first answer was lost (the SDK's retry then meets ``EntityAlreadyExists``) is recognised by
    the mark: it is recorded as created.

    Args:
        plan: the ledger. state: the grant record. tagger: the tag reader/writer. kind, name: the identity.
        tags: its tags from `survey` (None: it does not exist). detail: the report's text.
        create: IAM's Create* call, given ``kwargs`` and ``Tags``.

    Returns:
        True when `provision` created it (now or before).

    Raises:
        botocore.exceptions.ClientError: IAM refused.
    """
    resource = Resource(kind=kind, name=name, created=True)
    if tags is not None:
        return settle(plan, state, tagger, resource, tags, kept=detail)
    try:
        plan.create(resource, detail, create, answered_errors(), Tags=iam_tags(mark(state)), **kwargs)
    except answered_errors() as exc:
        if error_code(exc) != "EntityAlreadyExists" or not is_mine(owner(tagger.tags(kind, name) or {}), state):
            raise
        plan.record(resource)
        plan.note("create", kind, name, f"{detail} (the first answer was lost)")
    return True


def ensure_policy(aws: AwsProvider, plan: Plan, state: Any, kind: str, owner_name: str, ours: bool, new: bool,
                  iam: Any, owner_arg: str) -> None:
    """Create, update or keep the inline policy `policy_name` of ``owner_name`` (the profile's buckets and
    access); then delete the policy this grant recorded under an older name (`LEGACY_POLICY_NAME`).

    The policy is recorded as created only when this run puts it, or when it sits on an identity `provision`
    created; an existing one on an adopted identity is recorded as adopted (destroy leaves it).

    Args:
        aws: the provider (buckets, access). plan: the ledger. state: the grant record.
        kind: ``user_policy`` | ``role_policy``. owner_name: the user or role. ours: `provision` created the
            owner. new: the owner was created by this run (nothing to read). iam: an admin IAM client.
        owner_arg: ``UserName`` | ``RoleName``.
    """
    user = owner_arg == "UserName"
    get, put, delete = ((iam.get_user_policy, iam.put_user_policy, iam.delete_user_policy) if user
                        else (iam.get_role_policy, iam.put_role_policy, iam.delete_role_policy))
    name = policy_name(state)
    desired = s3_policy(aws.buckets, aws.profile.access)
    shown = f"{owner_name}/{name}"
    current = None if new else get_or_none(get, **{owner_arg: owner_name, "PolicyName": name})
    what = f"{aws.profile.access.value} on {', '.join(aws.buckets)}"
    kwargs = {owner_arg: owner_name, "PolicyName": name, "PolicyDocument": policy_json(desired)}
    resource = Resource(kind=kind, name=name, created=True, parent=owner_name)
    if current is None:
        plan.create(resource, what, put, answered_errors(), shown=shown, **kwargs)
    else:
        if not same_policy(current["PolicyDocument"], desired):
            plan.update(kind, shown, f"now {what}", put, **kwargs)
        else:
            plan.note("no change", kind, shown, what)
        if state.find(kind, name) is None:
            if ours:
                plan.record(resource)  # on an identity provision created: ours
            else:
                plan.adopt(resource.model_copy(update={"created": False}), "exists on an adopted identity; adopted")
    for old in [r for r in state.resources if r.kind == kind and r.name != name and r.parent == owner_name]:
        if not old.created:
            continue
        try:
            plan.delete(kind, f"{owner_name}/{old.name}", f"the old name, replaced by {name}", delete,
                        forget=(kind, old.name), **{owner_arg: owner_name, "PolicyName": old.name})
        except answered_errors() as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            plan.forget(kind, old.name)


def ensure_user_and_key(aws: AwsProvider, iam: Any, tagger: Tags, found: dict[Any, Any], state: Any,
                        plan: Plan) -> KeyPair | None:
    """The IAM user (created with the owner mark, or adopted), its inline policy, and an access key
    (`provision.providers.aws.keys.ensure_key`).

    Args:
        aws: the provider. iam: an admin IAM client. tagger: the tag reader/writer. found: `survey`'s answer.
        state: the grant record. plan: the ledger.

    Returns:
        The key; None in a dry run when a new key would be issued.

    Raises:
        CloudRefused, PartialFailure: see `provision.providers.aws.keys.ensure_key`.
    """
    user = aws.user
    tags = found[("iam_user", user)]
    ours = ensure_identity(plan, state, tagger, "iam_user", user, tags, "IAM user", iam.create_user, UserName=user)
    ensure_policy(aws, plan, state, "user_policy", user, ours, tags is None, iam, "UserName")
    shared = bool(sharers(tags or {}))
    return ensure_key(aws, iam, state, plan, user, new=tags is None, sweep=ours and not shared)


def ensure_role(aws: AwsProvider, iam: Any, tagger: Tags, found: dict[Any, Any], state: Any, plan: Plan) -> Role:
    """IAM-role mode: the role (trusted by ``ec2.amazonaws.com`` only), its inline policy, and an instance
    profile of the same name holding it (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2_instance-profiles.html);
    the role and the instance profile carry the owner mark.

    Args:
        aws: the provider. iam: an admin IAM client. tagger: the tag reader/writer. found: `survey`'s answer.
        state: the grant record. plan: the ledger.

    Returns:
        The `Role` auth of the Grant (no secret).
    """
    role = str(aws.role)
    trust = ec2_trust_policy()
    tags = found[("iam_role", role)]
    ours = ensure_identity(plan, state, tagger, "iam_role", role, tags, "trusted by ec2.amazonaws.com",
                           iam.create_role, RoleName=role, AssumeRolePolicyDocument=policy_json(trust))
    if tags is not None:
        current = get_or_none(iam.get_role, RoleName=role)
        if current is not None and not same_policy(current["Role"]["AssumeRolePolicyDocument"], trust):
            plan.update("iam_role", role, "trust policy: ec2.amazonaws.com only", iam.update_assume_role_policy,
                        RoleName=role, PolicyDocument=policy_json(trust))
    ensure_policy(aws, plan, state, "role_policy", role, ours, tags is None, iam, "RoleName")
    profile_tags = found[("instance_profile", role)]
    ensure_identity(plan, state, tagger, "instance_profile", role, profile_tags, f"holding role {role}",
                    iam.create_instance_profile, InstanceProfileName=role)
    roles: list[str] = []
    if profile_tags is not None:
        profile = get_or_none(iam.get_instance_profile, InstanceProfileName=role)
        roles = [r["RoleName"] for r in (profile or {}).get("InstanceProfile", {}).get("Roles", [])]
    if role not in roles:
        plan.update("instance_profile", role, f"add role {role}", iam.add_role_to_instance_profile,
                    InstanceProfileName=role, RoleName=role)
    return Role(role_name=role)
