"""The ``minio`` credential issuer: MinIO does not serve AWS's IAM API (https://github.com/minio/minio/issues/14298);
users, canned policies and access keys go through its admin API (``minio.MinioAdmin``,
https://min.io/docs/minio/linux/administration/identity-access-management/minio-user-management.html).

What one grant gets on MinIO, each recorded in state as created or adopted:

- ``minio_policy``: a canned policy ``provision-<env>-<grant>`` holding the same AWS-grammar document as the IAM
  inline policy (`provision.policies.s3_policy`; MinIO reads AWS's policy grammar,
  https://min.io/docs/minio/linux/administration/identity-access-management/policy-based-access-control.html).
- ``minio_user``: a user (default: the policy's name; ``--user``) with a random password that is never stored.
- ``minio_policy_attachment``: the policy attached to the user.
- ``minio_access_key``: an access key (service account) of that user, inheriting its policy, expiring after
  ``--key-expiry`` when given. MinIO's Python client makes access keys for the caller, so the key is created with
  the user's own credential: a user `provision` created gets a new random password first (a user it adopted is
  refused: its password is someone else's).

A re-run that finds everything in place makes read calls only. Buckets keep going through the S3 API
(`provision.providers.aws.buckets`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from provision.errors import BadInput, CloudRefused
from provision.ledger import Plan
from provision.models import KeyPair, Resource
from provision.policies import s3_policy, same_policy
from provision.providers.aws.sdk import answered_errors

if TYPE_CHECKING:
    from provision.providers.aws.provider import AwsProvider

POLICY_PREFIX = "provision-"
KEY_NAME = "provision"
"""The access keys' name (MinIO shows it in ``mc admin user svcacct list``)."""
GONE_CODES = ("XMinioAdminNoSuchUser", "XMinioAdminNoSuchPolicy", "XMinioAdminServiceAccountNotFound",
              "XMinioAdminPolicyChangeAlreadyApplied", "XMinioAdminNoSuchAccessKey")
"""Admin error codes meaning the thing to delete or detach is already gone."""
ADMIN_FIX = ("the admin credential needs MinIO's consoleAdmin policy (mc admin policy attach ALIAS consoleAdmin "
             "--user ADMIN), or use the root credential")
_SAFE = re.compile(r"[^A-Za-z0-9_.@=+-]")


class AdminRefused(Exception):
    """MinIO's admin API answered with an error.

    Attributes:
        command: the admin command (``add-user`` ...). status: the HTTP status. code: MinIO's error code
        (``XMinioAdminNoSuchUser``, ``AccessDenied`` ...). message: its message.
    """

    def __init__(self, command: str, status: int, code: str, message: str) -> None:
        self.command, self.status, self.code, self.message = command, status, code, message
        super().__init__(describe(self))

    @property
    def gone(self) -> bool:
        """True for MinIO's "no such user/policy/access key" answers (a 404 without a MinIO code is another
        server's)."""
        return self.code in GONE_CODES or (self.status == 404 and self.code.startswith("XMinio"))


class AdminRejected(AdminRefused):
    """A 4xx answer: the request was refused, nothing changed (a create recorded beforehand is forgotten)."""


def describe(exc: AdminRefused) -> str:
    """One line for an admin-API error, with the fix for the usual causes (no admin rights; not a MinIO)."""
    code = f" {exc.code}" if exc.code else ""
    text = f"admin API {exc.command}: HTTP {exc.status}{code}: {exc.message}".rstrip(": ")
    if exc.status == 403:
        text += f" ({ADMIN_FIX})"
    elif not exc.code:
        text += " (the endpoint does not serve MinIO's admin API: if it is not MinIO, pass --issuer aws-iam)"
    return text


def admin_errors() -> tuple[type[BaseException], ...]:
    """The admin API's answered errors (`AdminRefused`)."""
    return (AdminRefused,)


def detect_issuer(s3: Any) -> str:
    """``minio`` when the S3 endpoint answers with ``Server: MinIO`` (every MinIO answer carries it,
    https://min.io/docs/minio/linux/reference/minio-server/minio-server.html), else ``aws-iam``; one ListBuckets
    request with the admin credential (refused or not: only the header counts).

    Args:
        s3: an admin S3 client on the endpoint.
    """
    try:
        headers = s3.list_buckets()["ResponseMetadata"]["HTTPHeaders"]
    except answered_errors() as exc:
        headers = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return "minio" if str(headers.get("server", "")).lower().startswith("minio") else "aws-iam"


def policy_name(env: str, grant: str) -> str:
    """The canned policy of a grant: ``provision-<env>-<grant>`` (also the default user name)."""
    return _SAFE.sub("-", f"{POLICY_PREFIX}{env}-{grant}")[:128]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class MinioIam:
    """The admin calls the issuer makes, each answer parsed and each error raised as `AdminRefused`.

    Args:
        admin: a ``minio.MinioAdmin`` with the admin credential.
        user_admin: makes a ``MinioAdmin`` signing with a user's own key (`provision.providers.aws.sdk.AwsSdk.
            minio_admin`).
    """

    def __init__(self, admin: Any, user_admin: Callable[[KeyPair], Any]) -> None:
        self.admin = admin
        self.user_admin = user_admin

    @staticmethod
    def _call(command: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from minio.error import MinioAdminException

        try:
            return call(*args, **kwargs)
        except MinioAdminException as exc:
            status = int(exc._code) if str(exc._code).isdigit() else 0
            try:
                body = json.loads(exc._body or "{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                body = {"Message": "not an answer of MinIO's admin API"}
            kind = AdminRejected if 400 <= status < 500 else AdminRefused
            raise kind(command, status, str(body.get("Code", "")), str(body.get("Message", ""))) from None

    def _read(self, command: str, call: Callable[..., str], *args: Any) -> Any:
        """The parsed JSON answer of a read, or None when MinIO says it does not exist."""
        try:
            return json.loads(self._call(command, call, *args) or "null")
        except AdminRefused as exc:
            if exc.gone:
                return None
            raise

    # ---- reads ---------------------------------------------------------------------------------------------
    def check(self) -> None:
        """One read (``GET info``) that fails early, before anything is created, when the endpoint is not MinIO or
        the credential is not an admin."""
        self._call("info", self.admin.info)

    def policy(self, name: str) -> dict[str, Any] | None:
        """The canned policy's document, or None."""
        return self._read("info-canned-policy", self.admin.policy_info, name)  # type: ignore[no-any-return]

    def user(self, name: str) -> dict[str, Any] | None:
        """``{"status", "policyName": "a,b", ...}`` of a user, or None."""
        return self._read("user-info", self.admin.user_info, name)  # type: ignore[no-any-return]

    def key(self, access_key: str) -> dict[str, Any] | None:
        """``{"parentUser", "accountStatus", "expiration"?, ...}`` of an access key, or None."""
        return self._read("info-service-account", self.admin.get_service_account, access_key)  # type: ignore

    # ---- changes -------------------------------------------------------------------------------------------
    def add_policy(self, policy: str, document: dict[str, Any]) -> None:
        """Create or replace the canned policy ``policy``."""
        self._call("add-canned-policy", self.admin.policy_add, policy, policy=document)

    def remove_policy(self, policy: str) -> None:
        """Delete the canned policy ``policy``."""
        self._call("remove-canned-policy", self.admin.policy_remove, policy)

    def add_user(self, user: str, secret: str) -> None:
        """Create ``user`` (enabled), or set its password."""
        self._call("add-user", self.admin.user_add, user, secret)

    def enable_user(self, user: str) -> None:
        """Enable a disabled user."""
        self._call("set-user-status", self.admin.user_enable, user)

    def remove_user(self, user: str) -> None:
        """Delete ``user`` (MinIO deletes its access keys with it)."""
        self._call("remove-user", self.admin.user_remove, user)

    def attach(self, user: str, policy: str) -> None:
        """Attach ``policy`` to ``user``."""
        self._call("idp/builtin/policy/attach", self.admin.attach_policy, [policy], user=user)

    def detach(self, user: str, policy: str) -> None:
        """Detach ``policy`` from ``user``."""
        self._call("idp/builtin/policy/detach", self.admin.detach_policy, [policy], user=user)

    def add_key(self, user: str, secret: str, description: str, expiration: datetime | None) -> dict[str, Any]:
        """A new access key of ``user``, made with the user's own credential (``secret``): it inherits the user's
        policies. Returns MinIO's ``{"credentials": {"accessKey", "secretKey", "expiration"}}``."""
        admin = self.user_admin(KeyPair(access_key=user, secret_key=secret))
        answer = self._call("add-service-account", admin.add_service_account, name=KEY_NAME, description=description,
                            expiration=_rfc3339(expiration) if expiration else None)
        return json.loads(answer)  # type: ignore[no-any-return]

    def delete_key(self, access_key: str) -> None:
        """Delete an access key."""
        self._call("delete-service-account", self.admin.delete_service_account, access_key)


def key_usable(info: dict[str, Any] | None, user: str, now: datetime) -> str | None:
    """Why a stored access key (``info`` from `MinioIam.key`) cannot stay the grant's, or None when it can."""
    if info is None:
        return "the stored access key no longer exists"
    if info.get("parentUser") != user:
        return f"the stored access key belongs to {info.get('parentUser')!r}, not {user!r}"
    if info.get("accountStatus", "on") != "on":
        return "the stored access key is disabled"
    expires = info.get("expiration")
    if expires and not expires.startswith("1970-") and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
        return f"the stored access key expired at {expires}"
    return None


def ensure_minio(aws: AwsProvider, iam: MinioIam, state: Any, plan: Plan) -> KeyPair | None:
    """The canned policy, the user, the attachment and the access key of the grant (see the module docstring).

    Returns:
        The key: the stored one while MinIO still has it usable (unless ``plan.rotate``), else a new one, stored
        with its Grant at once and probed until S3 accepts it; None in a dry run when a new key would be issued.
        On rotation (or a stored key gone bad) the old key is deleted later (`Plan.defer`).

    Raises:
        AdminRefused: the admin API refused (mapped to one line by the provider).
        CloudRefused: a new key is needed for a user `provision` did not create.
        PartialFailure: the new key is still refused after the probe timeout.
    """
    from provision.providers.aws.keys import wait_for_key

    grant_name = getattr(state, "name", "") or aws.buckets[0]
    policy = policy_name(state.env, grant_name)
    user = aws.options.user or policy
    desired = s3_policy(aws.buckets, aws.profile.access)
    what = f"{aws.profile.access.value} on {', '.join(aws.buckets)}"

    current = iam.policy(policy)
    if current is None:
        plan.create(Resource(kind="minio_policy", name=policy, created=True), f"canned policy: {what}",
                    iam.add_policy, (AdminRejected,), policy=policy, document=desired)
    else:
        plan.adopt(Resource(kind="minio_policy", name=policy, created=False))
        if not same_policy(current, desired):
            plan.update("minio_policy", policy, f"now {what}", iam.add_policy, policy=policy, document=desired)
        else:
            plan.note("no change", "minio_policy", policy, what)

    secret: str | None = None
    info = iam.user(user)
    if info is None:
        secret = secrets.token_hex(20)
        plan.create(Resource(kind="minio_user", name=user, created=True), "MinIO user (random password, never "
                    "stored: only its access keys are used)", iam.add_user, (AdminRejected,), user=user, secret=secret)
    else:
        if not plan.adopt(Resource(kind="minio_user", name=user, created=False)):
            plan.note("no change", "minio_user", user, "MinIO user")
        if info.get("status", "enabled") != "enabled":
            plan.update("minio_user", user, "enable (it was disabled: its keys did not work)", iam.enable_user,
                        user=user)

    attached = [p for p in (info or {}).get("policyName", "").split(",") if p]
    link = Resource(kind="minio_policy_attachment", name=policy, created=True, parent=user)
    if policy not in attached:
        plan.create(link, f"attached to {user}", iam.attach, (AdminRejected,), shown=f"{user}/{policy}", user=user,
                    policy=policy)
    else:
        plan.note("no change", "minio_policy_attachment", f"{user}/{policy}", "attached")
        if plan.state.find(link.kind, link.name) is None:
            plan.record(link)
    ours = plan.state.find("minio_user", user)
    for extra in (p for p in attached if p != policy):
        if ours is not None and ours.created:
            plan.update("minio_user", user, f"detach policy {extra} (the grant is {policy} alone)", iam.detach,
                        user=user, policy=extra)
        else:
            plan.note("no change", "minio_user", user, f"also has policy {extra}: its access keys inherit it")

    now = datetime.now(timezone.utc)
    stored = state.grant.auth if state.grant and isinstance(state.grant.auth, KeyPair) else None
    problem = "no access key yet"
    if stored is not None:
        problem = "" if plan.planned("minio_user", user) else (
            key_usable(iam.key(stored.access_key), user, now) or "")
        if not problem and not plan.rotate:
            plan.note("no change", "minio_access_key", stored.access_key, f"of {user}")
            return stored
    try:
        expiration = aws.options.expiry(now)
    except BadInput as exc:  # an instant given earlier that has passed since
        plan.blocked(BadInput(f"{problem or 'rotation'}, and {exc.message}", exc.hint), "minio_access_key", user)
        return None
    if secret is None:
        if ours is None or not ours.created:
            plan.blocked(CloudRefused(
                f"MinIO user {user!r} was not created by provision, and a new access key for it needs its password "
                f"({problem or 'rotation'})", "pass another --user (provision creates it), or remove the user"),
                "minio_access_key", user)
            return None
        secret = secrets.token_hex(20)
        plan.update("minio_user", user, "new random password, to sign its new access key (never stored)",
                    iam.add_user, user=user, secret=secret)

    def keep(answer: dict[str, Any]) -> tuple[Resource, Any]:  # the secret exists only in this answer
        key = _key_pair(answer)
        return Resource(kind="minio_access_key", name=key.access_key, created=True, parent=user), aws.grant(key)

    until = f", expires {_rfc3339(expiration)}" if expiration else ""
    detail = (f"rotation: new access key{until}" if not problem else f"new access key{until} ({problem})")
    answer = plan.issue("minio_access_key", user, detail, iam.add_key, keep, user=user, secret=secret,
                        description=f"provision env {state.env} grant {grant_name}", expiration=expiration)
    if stored is not None and plan.state.find("minio_access_key", stored.access_key) is not None:
        plan.defer("delete", "minio_access_key", stored.access_key, "the old key, once the new one works and the "
                   "rendered files hold it", _delete_old, iam=iam, plan=plan, access_key=stored.access_key)
    if answer is None:
        return None
    key = _key_pair(answer)
    wait_for_key(aws.client("s3", key), aws.buckets[0])
    return key


def _key_pair(answer: dict[str, Any]) -> KeyPair:
    creds = answer["credentials"]
    return KeyPair(access_key=creds["accessKey"], secret_key=creds["secretKey"])


def _delete_old(iam: MinioIam, plan: Plan, access_key: str) -> None:
    """Delete an old access key (already gone counts as deleted) and forget it in the state."""
    try:
        iam.delete_key(access_key)
    except AdminRefused as exc:
        if not exc.gone:
            raise
    plan.forget("minio_access_key", access_key)


def delete_resource(iam: MinioIam, r: Resource, plan: Plan) -> None:
    """Delete one created MinIO resource through ``plan`` (access key, attachment, user, canned policy); one that
    is already gone is noted ``no change``.

    Raises:
        AdminRefused: a refusal other than "gone".
    """
    try:
        if r.kind == "minio_access_key":
            plan.delete(r.kind, r.name, f"of {r.parent}", iam.delete_key, access_key=r.name)
        elif r.kind == "minio_policy_attachment":
            plan.delete(r.kind, f"{r.parent}/{r.name}", "detach", iam.detach, user=r.parent, policy=r.name)
        elif r.kind == "minio_user":
            plan.delete(r.kind, r.name, "MinIO user (and its access keys)", iam.remove_user, user=r.name)
        elif r.kind == "minio_policy":
            plan.delete(r.kind, r.name, "canned policy", iam.remove_policy, policy=r.name)
    except AdminRefused as exc:
        if not exc.gone:
            raise
        plan.note("no change", r.kind, r.name, "already gone")
