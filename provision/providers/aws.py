"""AWS S3 + IAM (and any S3-compatible endpoint with an IAM API, such as the sandbox's moto server).

Every boto3 client is made by `AwsProvider.client`, the one seam where endpoint, region, credentials and the
SDK's retry configuration are set. Every mutating call goes through `Plan.write`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from provision.errors import BadInput, CloudRefused, PartialFailure, ProvisionError
from provision.models import Access, Grant, KeyPair, Resource, Role
from provision.names import check_iam_name, check_s3_bucket, resolve_buckets
from provision.policies import (
    IAM_ROLE_INLINE_LIMIT,
    IAM_USER_INLINE_LIMIT,
    ec2_trust_policy,
    policy_json,
    s3_policy,
    same_policy,
)
from provision.profiles import Profile
from provision.providers.base import Plan, VerifyRow
from provision.state import State

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SECURE_SSE = ("AES256", "aws:kms", "aws:kms:dsse")
"""Default-encryption algorithms accepted as secure on an adopted bucket (SSE-S3 is what we set)."""
PROBE_TIMEOUT = float(os.environ.get("PROVISION_PROBE_TIMEOUT", "90"))
"""Seconds to keep probing a new access key before giving up (IAM is eventually consistent)."""
_NOT_YET = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidClientTokenId", "403")
_DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled", "UnauthorizedOperation")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if hasattr(exc, "response") else ""


class AwsProvider:
    """Provision S3 buckets and a least-privilege IAM user (or role) for them.

    Args:
        profile: the validated inputs (``provider == "s3"``). No I/O happens here.

    Raises:
        BadInput: from `check`: invalid bucket/user/role names, conflicting options, a policy over IAM's size limit.
    """

    name = "s3"

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._session: Any = None
        self._sandbox: Any = None
        self.buckets = self.check()

    # ---- validation (pure, before any call) -------------------------------------------------------------------
    def check(self) -> list[str]:
        """Validate the profile for S3; returns the bucket names.

        Raises:
            BadInput: see the class docstring.
        """
        p = self.profile
        buckets = resolve_buckets(p.buckets, p.prefix, check_s3_bucket, "bucket")
        if p.iam_role and p.user:
            raise BadInput("--iam-role and --user are mutually exclusive", "IAM-role mode has no user; drop --user")
        if p.iam_role:
            check_iam_name(p.iam_role, "--iam-role")
            limit = IAM_ROLE_INLINE_LIMIT
        else:
            check_iam_name(self.user_name(buckets), "--user")
            limit = IAM_USER_INLINE_LIMIT
        size = len(policy_json(s3_policy(buckets, p.access)))
        if size > limit:
            raise BadInput(
                f"the policy for {len(buckets)} buckets is {size} characters, over IAM's inline limit of {limit}",
                "split the buckets across environments (--env)",
            )
        return buckets

    def user_name(self, buckets: list[str]) -> str:
        """``--user``, or ``provision-<prefix or first bucket>-<access>`` (≤ 64 characters)."""
        if self.profile.user:
            return self.profile.user
        label = self.profile.prefix or buckets[0]
        return f"provision-{label}"[:55] + f"-{self.profile.access.value}"

    @property
    def policy_name(self) -> str:
        """Name of the inline policy on the user or role."""
        return "provision-buckets"

    # ---- the one seam for SDK clients ---------------------------------------------------------------------------
    def endpoint_url(self) -> str | None:
        """The S3/IAM endpoint: the profile's, the sandbox's, ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, or None
        for AWS itself."""
        if self.profile.endpoint_url:
            return self.profile.endpoint_url
        if self.profile.sandbox:
            return self.sandbox().s3.endpoint_url
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None

    def sandbox(self) -> Any:
        """The running sandbox's info (``--env sandbox``). Raises BadInput when it is not running."""
        if self._sandbox is None:
            from provision.sandbox import require_info

            self._sandbox = require_info()
        return self._sandbox

    def region(self) -> str:
        """The profile's region, the sandbox's, the SDK's configured one, or ``us-east-1``."""
        if self.profile.region:
            return self.profile.region
        if self.profile.sandbox:
            return self.sandbox().s3.region
        return self.session().region_name or "us-east-1"

    def session(self) -> Any:
        """The boto3 session (admin credentials: the SDK's own chain, or the sandbox's admin key)."""
        if self._session is None:
            import boto3

            kwargs: dict[str, Any] = {"region_name": self.profile.region}
            if self.profile.sandbox:
                info = self.sandbox().s3
                kwargs.update(aws_access_key_id=info.access_key, aws_secret_access_key=info.secret_key,
                              region_name=self.profile.region or info.region)
            self._session = boto3.Session(**kwargs)
        return self._session

    def client(self, service: str, key: KeyPair | None = None) -> Any:
        """A boto3 client for ``service`` (``s3``, ``iam``, ``sts``): admin credentials, or ``key`` when given.

        Retries use botocore's ``standard`` mode (max_attempts=3); up to 64 pooled connections. Custom endpoints get
        path-style addressing.
        """
        from botocore.config import Config

        endpoint = self.endpoint_url()
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            s3={"addressing_style": "path"} if endpoint else {},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=64,  # manifest/migrate run up to 64 concurrent requests through one client
        )
        creds: dict[str, Any] = {}
        if key is not None:
            creds = {"aws_access_key_id": key.access_key, "aws_secret_access_key": key.secret_key,
                     "aws_session_token": None}
        return self.session().client(service, endpoint_url=endpoint, region_name=self.region(), config=config, **creds)

    # ---- apply ------------------------------------------------------------------------------------------------
    def apply(self, state: State, plan: Plan, save: Callable[[], None]) -> Grant | None:
        """Ensure buckets, policy and credential (see `provision.providers.base.Provider`).

        Returns:
            The Grant; None in dry-run when a new access key would be issued.

        Raises:
            CloudRefused: AWS refused before anything was created (credentials, permission, name taken).
            PartialFailure: AWS refused after something was created; state records it.
        """
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        before = len([r for r in state.resources if r.created])
        try:
            s3 = self.client("s3")
            for bucket in self.buckets:
                self._ensure_bucket(s3, bucket, state, plan, save)
            iam = self.client("iam")
            if self.profile.iam_role:
                auth: Any = self._ensure_role(iam, self.profile.iam_role, state, plan, save)
            else:
                auth = self._ensure_user_and_key(iam, state, plan, save)
        except NoCredentialsError:
            raise CloudRefused(
                "no AWS credentials found",
                "configure the AWS credential chain (aws configure, AWS_PROFILE, ...) or try --env sandbox",
            ) from None
        except (ClientError, BotoCoreError) as exc:
            created = len([r for r in state.resources if r.created]) > before
            message = f"AWS refused: {exc}"
            if created:
                raise PartialFailure(message, "state records what was created; re-run or `provision destroy`") from None
            raise CloudRefused(message, "check the admin credentials' permissions and the names") from None
        if auth is None:
            return None
        return self.grant(auth)

    def grant(self, auth: Any) -> Grant:
        """The Grant for ``auth`` on this profile's buckets and endpoint."""
        endpoint = self.endpoint_url()
        if endpoint:
            url = urlparse(endpoint)
            host, secure = url.hostname or "", url.scheme == "https"
            port = url.port or (443 if secure else 80)
        else:
            host, port, secure = "s3.amazonaws.com", 443, True
        return Grant(
            provider="s3", storage_provider="minio", access=self.profile.access, buckets=self.buckets,
            endpoint=host, endpoint_url=endpoint, port=port, secure=secure, region=self.region(), auth=auth,
        )

    def _create(self, state: State, plan: Plan, save: Callable[[], None], resource: Resource, detail: str,
                call: Callable[..., Any], **kwargs: Any) -> Any:
        """`Plan.create` with ClientError as the cloud's refusal."""
        from botocore.exceptions import ClientError

        return plan.create(state, save, resource, detail, call, (ClientError,), **kwargs)

    def _ensure_bucket(self, s3: Any, name: str, state: State, plan: Plan, save: Callable[[], None]) -> None:
        from botocore.exceptions import ClientError

        region = self.region()
        try:
            s3.head_bucket(Bucket=name)
            exists = True
        except ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                exists = False
            elif code in ("403", "AccessDenied", "Forbidden"):
                raise CloudRefused(
                    f"bucket {name!r} exists but belongs to someone else (or the admin credentials may not see it)",
                    "choose another bucket name",
                ) from None
            else:
                raise
        if not exists:
            kwargs: dict[str, Any] = {"Bucket": name, "ObjectOwnership": "BucketOwnerEnforced"}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self._create(state, plan, save, Resource(kind="bucket", name=name, created=True),
                             f"in {region}, object ownership BucketOwnerEnforced", s3.create_bucket, **kwargs)
            except ClientError as exc:
                if _code(exc) == "BucketAlreadyExists":
                    raise CloudRefused(f"bucket name {name!r} is taken by another account",
                                       "S3 bucket names are global; choose another") from None
                raise
        elif state.find("bucket", name) is None:
            plan.note("adopt", "bucket", name, "exists; adopted (destroy never deletes it)")
            state.record(Resource(kind="bucket", name=name, created=False))
            save()
        self._secure_bucket(s3, name, new=not exists, plan=plan)

    def _secure_bucket(self, s3: Any, name: str, new: bool, plan: Plan) -> None:
        """Public access block (all four), SSE-S3 default encryption, ownership BucketOwnerEnforced."""
        from botocore.exceptions import ClientError

        def read(call: Callable[..., Any], missing: str) -> Any:
            try:
                return call(Bucket=name)
            except ClientError as exc:
                if _code(exc) == missing:
                    return None
                raise

        changed = False
        pab = None if new else read(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration")
        if pab is None or pab["PublicAccessBlockConfiguration"] != PUBLIC_ACCESS_BLOCK:
            plan.write("update", "bucket", name, "public access block: all four on", s3.put_public_access_block,
                       Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
            changed = True
        enc = None if new else read(s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError")
        algorithms = [
            r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
            for r in (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        ]
        if not any(a in SECURE_SSE for a in algorithms):
            plan.write("update", "bucket", name, "default encryption: SSE-S3 (AES256)", s3.put_bucket_encryption,
                       Bucket=name, ServerSideEncryptionConfiguration={
                           "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
            changed = True
        if not new:  # a new bucket got BucketOwnerEnforced with CreateBucket
            own = read(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError")
            rules = [r.get("ObjectOwnership") for r in (own or {}).get("OwnershipControls", {}).get("Rules", [])]
            if rules != ["BucketOwnerEnforced"]:
                plan.write("update", "bucket", name, "object ownership: BucketOwnerEnforced (ACLs off)",
                           s3.put_bucket_ownership_controls, Bucket=name,
                           OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
                changed = True
        if not new and not changed:
            plan.note("no change", "bucket", name, "private, encrypted, owner-enforced")

    def _exists(self, call: Callable[..., Any], **kwargs: Any) -> Any:
        """The read's response, or None on ``NoSuchEntity``."""
        from botocore.exceptions import ClientError

        try:
            return call(**kwargs)
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return None
            raise

    def _ensure_policy(self, plan: Plan, kind: str, owner: str, new_owner: bool, get: Callable[..., Any],
                       put: Callable[..., Any], owner_arg: str) -> None:
        desired = s3_policy(self.buckets, self.profile.access)
        current = None if new_owner else self._exists(get, **{owner_arg: owner, "PolicyName": self.policy_name})
        what = f"{self.profile.access.value} on {', '.join(self.buckets)}"
        kwargs = {owner_arg: owner, "PolicyName": self.policy_name, "PolicyDocument": policy_json(desired)}
        if current is None:
            plan.write("create", kind, f"{owner}/{self.policy_name}", what, put, **kwargs)
        elif not same_policy(current["PolicyDocument"], desired):
            plan.write("update", kind, f"{owner}/{self.policy_name}", f"now {what}", put, **kwargs)
        else:
            plan.note("no change", kind, f"{owner}/{self.policy_name}", what)

    def _ensure_user_and_key(self, iam: Any, state: State, plan: Plan, save: Callable[[], None]) -> KeyPair | None:
        user = self.user_name(self.buckets)
        tags = [{"Key": "provision:env", "Value": state.env}]
        new = self._exists(iam.get_user, UserName=user) is None
        if new:
            self._create(state, plan, save, Resource(kind="iam_user", name=user, created=True), "IAM user",
                         iam.create_user, UserName=user, Tags=tags)
        elif state.find("iam_user", user) is None:
            plan.note("adopt", "iam_user", user, "exists; adopted (destroy never deletes it)")
            state.record(Resource(kind="iam_user", name=user, created=False))
            save()
        else:
            plan.note("no change", "iam_user", user, "IAM user")
        self._ensure_policy(plan, "user_policy", user, new, iam.get_user_policy, iam.put_user_policy, "UserName")
        if not plan.dry_run:
            state.record(Resource(kind="user_policy", name=self.policy_name, created=True, parent=user))
            save()

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
        detail = "rotation: new access key" if rotating else "new access key (probed until IAM accepts it)"
        created = plan.write("issue", "access_key", user, detail, iam.create_access_key, UserName=user)
        if rotating and stored is not None:
            plan.defer("delete", "access_key", stored.access_key, "the old key, once the new one works and the "
                       "rendered files hold it", self._delete_key, iam=iam, state=state, save=save, user=user,
                       key_id=stored.access_key)
        if created is None:
            return None
        key = KeyPair(access_key=created["AccessKey"]["AccessKeyId"],
                      secret_key=created["AccessKey"]["SecretAccessKey"])
        plan.changes[-1].name = key.access_key
        state.record(Resource(kind="access_key", name=key.access_key, created=True, parent=user))
        state.grant = self.grant(key)  # the secret exists only in this response: store it before anything else
        save()
        self.wait_for_key(key)
        return key

    def _delete_key(self, iam: Any, state: State, save: Callable[[], None], user: str, key_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
        state.forget("access_key", key_id)
        save()

    def wait_for_key(self, key: KeyPair) -> None:
        """Probe a new key with ListObjectsV2 (MaxKeys=1) on the first bucket, backing off from 0.5 s to 8 s,
        until IAM accepts it.

        Raises:
            PartialFailure: still refused after `PROBE_TIMEOUT` seconds (the key is recorded in state).
        """
        from botocore.exceptions import ClientError

        s3 = self.client("s3", key)
        delay, deadline = 0.5, time.monotonic() + PROBE_TIMEOUT
        while True:
            try:
                s3.list_objects_v2(Bucket=self.buckets[0], MaxKeys=1)
                return
            except ClientError as exc:
                code = _code(exc)
                if code not in _NOT_YET or time.monotonic() + delay > deadline:
                    raise PartialFailure(
                        f"the new access key still fails after {PROBE_TIMEOUT:.0f} s ({code})",
                        "it is recorded in state; run `provision verify` later",
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    def _ensure_role(self, iam: Any, role: str, state: State, plan: Plan, save: Callable[[], None]) -> Role:
        trust = ec2_trust_policy()
        current = self._exists(iam.get_role, RoleName=role)
        tags = [{"Key": "provision:env", "Value": state.env}]
        if current is None:
            self._create(state, plan, save, Resource(kind="iam_role", name=role, created=True),
                         "trusted by ec2.amazonaws.com", iam.create_role, RoleName=role,
                         AssumeRolePolicyDocument=policy_json(trust), Tags=tags)
        else:
            if state.find("iam_role", role) is None:
                plan.note("adopt", "iam_role", role, "exists; adopted (destroy never deletes it)")
                state.record(Resource(kind="iam_role", name=role, created=False))
                save()
            else:
                plan.note("no change", "iam_role", role, "trusted by ec2.amazonaws.com")
            if not same_policy(current["Role"]["AssumeRolePolicyDocument"], trust):
                plan.write("update", "iam_role", role, "trust policy: ec2.amazonaws.com only",
                           iam.update_assume_role_policy, RoleName=role, PolicyDocument=policy_json(trust))
        self._ensure_policy(plan, "role_policy", role, current is None, iam.get_role_policy, iam.put_role_policy,
                            "RoleName")
        if not plan.dry_run:
            state.record(Resource(kind="role_policy", name=self.policy_name, created=True, parent=role))
            save()
        profile = self._exists(iam.get_instance_profile, InstanceProfileName=role)
        if profile is None:
            self._create(state, plan, save, Resource(kind="instance_profile", name=role, created=True),
                         f"holding role {role}", iam.create_instance_profile, InstanceProfileName=role, Tags=tags)
            roles: list[str] = []
        else:
            if state.find("instance_profile", role) is None:
                plan.note("adopt", "instance_profile", role, "exists; adopted")
                state.record(Resource(kind="instance_profile", name=role, created=False))
                save()
            roles = [r["RoleName"] for r in profile["InstanceProfile"].get("Roles", [])]
        if role not in roles:
            plan.write("update", "instance_profile", role, f"add role {role}", iam.add_role_to_instance_profile,
                       InstanceProfileName=role, RoleName=role)
        elif profile is not None and current is not None:
            plan.note("no change", "instance_profile", role, f"holds role {role}")
        return Role(role_name=role)

    # ---- destroy ----------------------------------------------------------------------------------------------
    def destroy(self, state: State, plan: Plan, save: Callable[[], None], delete_data: bool) -> list[str]:
        """Delete what `provision` created, newest first; adopted resources are only forgotten.

        An inline policy or access key that `provision` added to an adopted user or role is removed (it is ours);
        the adopted user, role or bucket stays, with its objects.

        Returns:
            Names of adopted resources left in place.

        Raises:
            BadInput: a bucket `provision` created still holds objects and ``delete_data`` is False (checked
                before anything is deleted).
            CloudRefused / PartialFailure: the cloud refused a deletion; state keeps what still exists.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        s3, iam = self.client("s3"), self.client("iam")
        ours = [r for r in reversed(state.resources) if r.created]
        if not delete_data:
            for r in ours:
                if r.kind == "bucket" and self._bucket_has_objects(s3, r.name):
                    raise BadInput(f"bucket {r.name!r} (created by provision) still holds objects",
                                   "pass --delete-data to delete them with it, or empty it first")
        kept = [f"{r.kind} {r.name}" for r in state.resources if not r.created]
        try:
            for r in ours:
                self._delete(s3, iam, r, plan)
                if not plan.dry_run:
                    state.forget(r.kind, r.name)
                    save()
        except (ClientError, BotoCoreError) as exc:
            raise PartialFailure(f"AWS refused a deletion: {exc}",
                                 "state keeps what still exists; fix the cause and run destroy again") from None
        return kept

    def _bucket_has_objects(self, s3: Any, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            return bool(s3.list_object_versions(Bucket=bucket, MaxKeys=1).get("Versions")
                        or s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount"))
        except ClientError as exc:
            if _code(exc) in ("NoSuchBucket", "404"):
                return False
            raise

    def _delete(self, s3: Any, iam: Any, r: Resource, plan: Plan) -> None:
        """Delete one created resource; one that is already gone counts as deleted."""
        from botocore.exceptions import ClientError

        try:
            if r.kind == "access_key":
                plan.write("delete", r.kind, r.name, f"of {r.parent}", iam.delete_access_key, UserName=r.parent,
                           AccessKeyId=r.name)
            elif r.kind == "user_policy":
                plan.write("delete", r.kind, f"{r.parent}/{r.name}", "inline policy", iam.delete_user_policy,
                           UserName=r.parent, PolicyName=r.name)
            elif r.kind == "role_policy":
                plan.write("delete", r.kind, f"{r.parent}/{r.name}", "inline policy", iam.delete_role_policy,
                           RoleName=r.parent, PolicyName=r.name)
            elif r.kind == "iam_user":
                self._empty_user(iam, r.name, plan)
                plan.write("delete", r.kind, r.name, "IAM user", iam.delete_user, UserName=r.name)
            elif r.kind == "instance_profile":
                roles = iam.get_instance_profile(InstanceProfileName=r.name)["InstanceProfile"]["Roles"]
                for role in roles:
                    plan.write("update", r.kind, r.name, f"remove role {role['RoleName']}",
                               iam.remove_role_from_instance_profile, InstanceProfileName=r.name,
                               RoleName=role["RoleName"])
                plan.write("delete", r.kind, r.name, "instance profile", iam.delete_instance_profile,
                           InstanceProfileName=r.name)
            elif r.kind == "iam_role":
                for profile in iam.list_instance_profiles_for_role(RoleName=r.name)["InstanceProfiles"]:
                    plan.write("update", "instance_profile", profile["InstanceProfileName"], f"remove role {r.name}",
                               iam.remove_role_from_instance_profile,
                               InstanceProfileName=profile["InstanceProfileName"], RoleName=r.name)
                for name in iam.list_role_policies(RoleName=r.name)["PolicyNames"]:
                    plan.write("delete", "role_policy", f"{r.name}/{name}", "inline policy", iam.delete_role_policy,
                               RoleName=r.name, PolicyName=name)
                plan.write("delete", r.kind, r.name, "IAM role", iam.delete_role, RoleName=r.name)
            elif r.kind == "bucket":
                self._empty_bucket(s3, r.name, plan)
                plan.write("delete", r.kind, r.name, "bucket", s3.delete_bucket, Bucket=r.name)
        except ClientError as exc:
            if _code(exc) not in ("NoSuchEntity", "NoSuchBucket", "404"):
                raise
            plan.note("no change", r.kind, r.name, "already gone")

    def _empty_user(self, iam: Any, user: str, plan: Plan) -> None:
        """Remove what IAM requires gone before DeleteUser: remaining keys and inline/attached policies."""
        done = {c.name for c in plan.changes if c.action == "delete"}
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            if key["AccessKeyId"] in done:
                continue
            plan.write("delete", "access_key", key["AccessKeyId"], f"of {user}", iam.delete_access_key,
                       UserName=user, AccessKeyId=key["AccessKeyId"])
        for name in iam.list_user_policies(UserName=user)["PolicyNames"]:
            if f"{user}/{name}" in done:
                continue
            plan.write("delete", "user_policy", f"{user}/{name}", "inline policy", iam.delete_user_policy,
                       UserName=user, PolicyName=name)
        for attached in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]:
            plan.write("update", "iam_user", user, f"detach {attached['PolicyArn']}", iam.detach_user_policy,
                       UserName=user, PolicyArn=attached["PolicyArn"])

    def _empty_bucket(self, s3: Any, bucket: str, plan: Plan) -> None:
        """Delete every object version in ``bucket`` (only reached with --delete-data or when already empty)."""
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if items:
                plan.write("delete", "objects", bucket, f"{len(items)} object versions", s3.delete_objects,
                           Bucket=bucket, Delete={"Objects": items, "Quiet": True})

    # ---- data -------------------------------------------------------------------------------------------------
    def objects(self, state: State, bucket: str, write: bool) -> Any:
        """An `S3Objects` store for ``bucket``: the grant's key when it can do the job (reads; writes only with
        a ``full`` grant), else the admin credentials.

        Stores opened from one provider object with the same credential share one S3 client (one connection
        pool; client creation costs ~0.1 s of CPU). That client parses no timestamps: the data commands never
        read one (``LastModified`` stays the text S3 sent), and parsing them was a third of a listing's cost.
        """
        grant = state.grant
        key = grant.auth if grant is not None and isinstance(grant.auth, KeyPair) else None
        if key is not None and write and grant is not None and grant.access != Access.full:
            key = None
        clients: dict[str | None, Any] = self.__dict__.setdefault("_data_clients", {})
        cache_key = key.access_key if key is not None else None
        if cache_key not in clients:
            from botocore.parsers import ResponseParserFactory

            core = self.session()._session  # the botocore session behind boto3's (boto3's documented attribute)
            default = core.get_component("response_parser_factory")
            fast = ResponseParserFactory()
            fast.set_parser_defaults(timestamp_parser=_raw_timestamp)
            core.register_component("response_parser_factory", fast)  # read once, when the client is created
            try:
                clients[cache_key] = self.client("s3", key)
            finally:
                core.register_component("response_parser_factory", default)
        return S3Objects(clients[cache_key], bucket)

    # ---- verify -----------------------------------------------------------------------------------------------
    def verify(self, state: State) -> list[VerifyRow]:
        """Probe the stored access key against its grant.

        With the admin credentials it puts one probe object in each bucket and makes one temporary bucket
        (``provision-verify-<hex>``) to stand for "another bucket"; all are removed afterwards.

        Returns:
            One row per probe: ListObjectsV2, GetObject, GetBucketLocation (allowed); PutObject, DeleteObject,
            CreateMultipartUpload (allowed only for ``full``); PutBucketPolicy, ListBuckets, and
            ListObjectsV2/GetObject/PutObject on another bucket (always denied).

        Raises:
            BadInput: the grant is not a key pair (IAM-role mode has no key to probe from here).
        """
        from botocore.exceptions import ClientError

        grant = state.grant
        if grant is None or not isinstance(grant.auth, KeyPair):
            raise BadInput("this grant has no access key to probe (IAM-role mode)",
                           "verify from an instance that carries the instance profile")
        admin, user = self.client("s3"), self.client("s3", grant.auth)
        full = grant.access == Access.full
        token = uuid.uuid4().hex[:10]
        probe_key = f".provision-verify/{token}"
        other = f"provision-verify-{token}"
        rows: list[VerifyRow] = []

        def attempt(operation: str, target: str, allowed: bool, call: Callable[..., Any], **kwargs: Any) -> Any:
            result = None
            try:
                result = call(**kwargs)
                actual = "allow"
            except ClientError as exc:
                code = _code(exc)
                actual = "deny" if code in _DENIED else f"error: {code}"
            rows.append(VerifyRow(operation=operation, target=target, expected="allow" if allowed else "deny",
                                  actual=actual))
            return result

        try:
            admin.create_bucket(Bucket=other, **self._location())
            for bucket in grant.buckets:
                admin.put_object(Bucket=bucket, Key=probe_key, Body=b"provision verify")
                attempt("ListObjectsV2", bucket, True, user.list_objects_v2, Bucket=bucket, MaxKeys=1)
                attempt("GetObject", f"{bucket}/{probe_key}", True, user.get_object, Bucket=bucket, Key=probe_key)
                attempt("GetBucketLocation", bucket, True, user.get_bucket_location, Bucket=bucket)
                attempt("PutObject", f"{bucket}/{probe_key}.w", full, user.put_object, Bucket=bucket,
                        Key=f"{probe_key}.w", Body=b"x")
                attempt("DeleteObject", f"{bucket}/{probe_key}", full, user.delete_object, Bucket=bucket, Key=probe_key)
                upload = attempt("CreateMultipartUpload", f"{bucket}/{probe_key}.m", full,
                                 user.create_multipart_upload, Bucket=bucket, Key=f"{probe_key}.m")
                if upload:
                    admin.abort_multipart_upload(Bucket=bucket, Key=f"{probe_key}.m", UploadId=upload["UploadId"])
                attempt("PutBucketPolicy", bucket, False, user.put_bucket_policy, Bucket=bucket,
                        Policy=policy_json({"Version": "2012-10-17", "Statement": []}))
            attempt("ListBuckets", "*", False, user.list_buckets)
            attempt("ListObjectsV2", f"{other} (another bucket)", False, user.list_objects_v2, Bucket=other)
            attempt("PutObject", f"{other} (another bucket)", False, user.put_object, Bucket=other, Key="x", Body=b"x")
        except ClientError as exc:
            raise CloudRefused(f"verify could not set up its probes: {exc}", "check the admin credentials") from None
        finally:
            self._cleanup(admin, grant.buckets, probe_key, other)
        return rows

    def _location(self) -> dict[str, Any]:
        region = self.region()
        return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}

    def _cleanup(self, admin: Any, buckets: list[str], probe_key: str, other: str) -> None:
        """Remove verify's probe objects and temporary bucket; failures here are reported, not raised."""
        from botocore.exceptions import ClientError

        try:
            for bucket in buckets:
                admin.delete_objects(Bucket=bucket, Delete={"Objects": [
                    {"Key": probe_key}, {"Key": f"{probe_key}.w"}, {"Key": f"{probe_key}.m"}]})
            listing = admin.list_objects_v2(Bucket=other).get("Contents", [])
            if listing:
                admin.delete_objects(Bucket=other, Delete={"Objects": [{"Key": o["Key"]} for o in listing]})
            admin.delete_bucket(Bucket=other)
        except ClientError as exc:
            if _code(exc) not in ("NoSuchBucket", "404"):
                raise ProvisionError(f"verify could not remove its probe objects: {exc}",
                                     f"delete bucket {other} and keys {probe_key}* by hand") from None


def _raw_timestamp(value: str) -> str:
    """Timestamp "parser" of the data client: keep the text (see `AwsProvider.objects`)."""
    return value


def _refused(exc: Exception, operation: str, bucket: str, key: str | None = None) -> CloudRefused:
    """``exc`` (botocore's ClientError or BotoCoreError) as one-line `CloudRefused` naming the operation, the
    bucket (and key) and S3's error code (or, for a connection failure, botocore's error class)."""
    code = _code(exc)
    if code:
        message = str(exc.response.get("Error", {}).get("Message", "") or "")  # type: ignore[attr-defined]
    else:
        code, message = type(exc).__name__, str(exc)
    detail = " ".join(message.split())
    where = f"bucket {bucket!r}" + (f", key {key!r}" if key is not None else "")
    return CloudRefused(f"S3 {operation} on {where} failed: {code}" + (f" ({detail[:200]})" if detail else ""),
                        "check that the bucket exists and that the credential may do this "
                        "(`provision verify`), and that the endpoint is reachable")


class S3Objects:
    """`provision.objects.ObjectStore` over one boto3 S3 client and one bucket.

    Every method raises `provision.errors.CloudRefused` (operation, bucket, S3 error code) for a refused request
    or an unreachable endpoint, after botocore's own retries.

    Args:
        client: a boto3 S3 client (from `AwsProvider.objects`).
        bucket: the bucket name.
    """

    url_scheme = "s3"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def list(self, prefix: str = "") -> Any:
        """Objects under ``prefix`` in key order (ListObjectsV2, 1,000 per page, streamed)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from provision.objects import ObjectInfo

        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"], item["Size"], item.get("ETag", "").strip('"'))
        except (ClientError, BotoCoreError) as exc:
            raise _refused(exc, "ListObjectsV2", self.bucket) from None

    def head(self, key: str) -> Any:
        """Size and ETag of ``key`` (HeadObject), or None when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        from provision.objects import ObjectInfo

        try:
            got = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _refused(exc, "HeadObject", self.bucket, key) from None
        except BotoCoreError as exc:
            raise _refused(exc, "HeadObject", self.bucket, key) from None
        return ObjectInfo(key, got["ContentLength"], got.get("ETag", "").strip('"'))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (a ranged GetObject); b"" past the end."""
        if length <= 0:
            return b""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            return bytes(got["Body"].read())
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # empty object, or start past the end
                return b""
            raise _refused(exc, "GetObject", self.bucket, key) from None
        except BotoCoreError as exc:
            raise _refused(exc, "GetObject", self.bucket, key) from None

    def read(self, key: str) -> bytes:
        """The whole object (GetObject)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise _refused(exc, "GetObject", self.bucket, key) from None

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace ``key`` (PutObject)."""
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise _refused(exc, "PutObject", self.bucket, key) from None

    def put_file(self, key: str, path: Any) -> None:
        """Upload a local file with boto3's transfer manager (multipart from 8 MiB)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.bucket, key)
        except (ClientError, BotoCoreError) as exc:
            raise _refused(exc, "PutObject", self.bucket, key) from None
        except S3UploadFailedError as exc:  # boto3 wraps the ClientError; its text carries the code
            raise CloudRefused(f"S3 upload to bucket {self.bucket!r}, key {key!r} failed: {' '.join(str(exc).split())}",
                               "check that the credential may write to the bucket (`provision verify`)") from None

    def transfer(self, concurrency: int) -> Any:
        """A `provision.transfer.S3Transfer` into this bucket over this store's client (``provision migrate``)."""
        from provision.transfer import S3Transfer

        return S3Transfer(self.client, self.bucket, concurrency)
