"""Deleting what `provision` created on AWS, one resource at a time, with what IAM and S3 require gone first
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html: a user's keys and policies before the
user; a role out of its instance profiles and its inline policies before the role; a bucket's objects before the
bucket)."""

from __future__ import annotations

from typing import Any

from provision.ledger import Plan
from provision.models import Resource
from provision.providers.aws.buckets import empty_bucket
from provision.providers.aws.keys import INTENT, settle_intent
from provision.providers.aws.marks import MARKED_KINDS, Tags, hand_over
from provision.providers.aws.sdk import answered_errors, error_code

GONE = ("NoSuchEntity", "NoSuchBucket", "404")
"""Error codes meaning the resource no longer exists (it then counts as deleted)."""


def delete_resource(s3: Any, iam: Any, tagger: Tags, state: Any, r: Resource, plan: Plan) -> None:
    """Delete one created resource through ``plan``; one that is already gone is noted ``no change``. A bucket,
    user, role or instance profile another provision state shares (``--adopt``) is handed over to it instead
    (`provision.providers.aws.marks.hand_over`); a key intent is settled (`provision.providers.aws.keys`).

    Args:
        s3, iam: admin clients. tagger: the tag reader/writer. state: the grant record. r: the state's record.
        plan: the ledger.

    Raises:
        botocore.exceptions.ClientError: a refusal other than "gone".
    """
    try:
        if r.kind in MARKED_KINDS and hand_over(plan, state, tagger, r.kind, r.name):
            return
        if r.kind == INTENT:
            settle_intent(iam, plan, state, r)
        elif r.kind == "access_key":
            plan.delete(r.kind, r.name, f"of {r.parent}", iam.delete_access_key, UserName=r.parent,
                        AccessKeyId=r.name)
        elif r.kind == "user_policy":
            plan.delete(r.kind, f"{r.parent}/{r.name}", "inline policy", iam.delete_user_policy,
                        UserName=r.parent, PolicyName=r.name)
        elif r.kind == "role_policy":
            plan.delete(r.kind, f"{r.parent}/{r.name}", "inline policy", iam.delete_role_policy,
                        RoleName=r.parent, PolicyName=r.name)
        elif r.kind == "iam_user":
            empty_user(iam, r.name, plan)
            plan.delete(r.kind, r.name, "IAM user", iam.delete_user, UserName=r.name)
        elif r.kind == "instance_profile":
            roles = iam.get_instance_profile(InstanceProfileName=r.name)["InstanceProfile"]["Roles"]
            for role in roles:
                plan.update(r.kind, r.name, f"remove role {role['RoleName']}", iam.remove_role_from_instance_profile,
                            InstanceProfileName=r.name, RoleName=role["RoleName"])
            plan.delete(r.kind, r.name, "instance profile", iam.delete_instance_profile, InstanceProfileName=r.name)
        elif r.kind == "iam_role":
            empty_role(iam, r.name, plan)
            plan.delete(r.kind, r.name, "IAM role", iam.delete_role, RoleName=r.name)
        elif r.kind == "bucket":
            empty_bucket(s3, r.name, plan)
            plan.delete(r.kind, r.name, "bucket", s3.delete_bucket, Bucket=r.name)
    except answered_errors() as exc:
        if error_code(exc) not in GONE:
            raise
        plan.note("no change", r.kind, r.name, "already gone")


def empty_user(iam: Any, user: str, plan: Plan) -> None:
    """Remove what IAM requires gone before DeleteUser: remaining access keys, inline and attached policies
    (those this run already deleted are skipped)."""
    for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        if plan.deleted(key["AccessKeyId"]):
            continue
        plan.delete("access_key", key["AccessKeyId"], f"of {user}", iam.delete_access_key,
                    UserName=user, AccessKeyId=key["AccessKeyId"])
    for name in iam.list_user_policies(UserName=user)["PolicyNames"]:
        if plan.deleted(f"{user}/{name}"):
            continue
        plan.delete("user_policy", f"{user}/{name}", "inline policy", iam.delete_user_policy,
                    UserName=user, PolicyName=name)
    for attached in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]:
        plan.update("iam_user", user, f"detach {attached['PolicyArn']}", iam.detach_user_policy,
                    UserName=user, PolicyArn=attached["PolicyArn"])


def empty_role(iam: Any, role: str, plan: Plan) -> None:
    """Remove what IAM requires gone before DeleteRole: its place in instance profiles and its inline policies."""
    for profile in iam.list_instance_profiles_for_role(RoleName=role)["InstanceProfiles"]:
        plan.update("instance_profile", profile["InstanceProfileName"], f"remove role {role}",
                    iam.remove_role_from_instance_profile, InstanceProfileName=profile["InstanceProfileName"],
                    RoleName=role)
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        plan.delete("role_policy", f"{role}/{name}", "inline policy", iam.delete_role_policy,
                    RoleName=role, PolicyName=name)
