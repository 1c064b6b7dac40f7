"""The sandbox's MinIO: the part of MinIO's admin API that ``provision`` calls, in front of the sandbox's enforcing
S3/IAM emulator (moto), so the keys it issues really are allowed and denied by their policies.

MinIO does not implement AWS's IAM API: users, canned policies, their attachment and service accounts (access keys)
go through its admin API, ``/minio/admin/v3/<command>``, SigV4-signed, with most request bodies and some answers
encrypted with the caller's secret key (``minio.crypto``: Argon2id + AES-GCM stream,
https://github.com/minio/madmin-go/blob/main/encrypt.go). `minio_app` serves those commands and forwards every other
request (buckets, objects) to the S3 upstream unchanged; every answer carries ``Server: MinIO``, as MinIO's do
(https://min.io/docs/minio/linux/reference/minio-server/minio-server.html).

How MinIO's model maps onto moto (which has IAM users, inline policies and at most two access keys per user):

- The root user is the sandbox admin key (the moto admin); it alone may call every admin command.
- Users and canned policies are kept here (a user's secret key is needed to check the admin requests it signs).
  Built-in canned policies: ``readonly``, ``readwrite``, ``writeonly``
  (https://min.io/docs/minio/linux/administration/identity-access-management/policy-based-access-control.html).
- A service account is a moto IAM user (path ``/minio/``) with one access key: the service account's key. Its inline
  policies are copies of its parent's attached canned policies (``minio-<name>``; the root's: all of ``s3:*``), kept
  in step when attachments or policy documents change, so moto enforces the parent's rights.
- A service account's own ``policy`` (MinIO's session policy: the key may do what both the parent's policies and it
  allow) has no moto equivalent; this server checks it on each S3 request with moto's own policy evaluator and the
  S3 action moto would check, before forwarding. Its ``expiration`` and status are checked here too: an expired or
  disabled key, or one whose parent is disabled, is answered 403 ``InvalidAccessKeyId``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote

ADMIN_PREFIX = "/minio/admin/v3/"
SERVER = "MinIO"
IAM_PATH = "/minio/"
CLOCK_SKEW = timedelta(minutes=15)
"""The largest difference between a request's ``X-Amz-Date`` and now that SigV4 accepts."""
NEVER = "1970-01-01T00:00:00Z"
"""How MinIO reports "no expiration" in a new service account's credentials."""


def _allow(actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}


_ALL_S3 = _allow(["s3:*"], ["*"])
BUILTIN_POLICIES = {"readwrite": _allow(["s3:*"], ["arn:aws:s3:::*"]),
                    "readonly": _allow(["s3:GetBucketLocation", "s3:GetObject"], ["arn:aws:s3:::*"]),
                    "writeonly": _allow(["s3:PutObject"], ["arn:aws:s3:::*"])}
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/]*)/([^/]+)/aws4_request,\s*"
                   r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]+)")
_ACCESS_KEY = re.compile(r"Credential=([^/,&]+)/")


class AdminError(Exception):
    """An admin-API refusal, answered as MinIO does: HTTP ``status`` with ``{"Code", "Message", ...}`` JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_MISSING = {"user": ("XMinioAdminNoSuchUser", "The specified user does not exist."),
            "policy": ("XMinioAdminNoSuchPolicy", "The canned policy does not exist."),
            "account": ("XMinioAdminServiceAccountNotFound", "The specified service account is not found.")}


def _missing(kind: str, name: str) -> AdminError:
    """MinIO's 404 for a missing user, policy or service account."""
    return AdminError(404, _MISSING[kind][0], f"{_MISSING[kind][1]} ({name})")


def _nothing() -> None:
    """Release nothing (the admin body, read as `minio.crypto.decrypt` reads a urllib3 response)."""


def _header(environ: dict[str, Any], name: str) -> str:
    if name == "content-type":
        return environ.get("CONTENT_TYPE", "")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH", "")
    return environ.get("HTTP_" + name.upper().replace("-", "_"), "")


def verify_sigv4(environ: dict[str, Any], body: bytes, secret_for: Callable[[str], str | None]) -> str:
    """Check a header-signed SigV4 request (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html)
    the way MinIO checks its admin requests: known access key, payload hash equal to the body's, ``X-Amz-Date`` within
    `CLOCK_SKEW` of now, signature equal to the one computed with botocore's signer.

    Args:
        environ: the WSGI environ (its ``HTTP_AUTHORIZATION``, signed headers and raw URI).
        body: the request body (bytes).
        secret_for: the secret key of an access key, None for an unknown one.

    Returns:
        The access key that signed the request.

    Raises:
        AdminError: 403 ``AccessDenied`` (no or malformed signature), ``InvalidAccessKeyId``,
            ``XAmzContentSHA256Mismatch`` (400), ``RequestTimeTooSkewed`` or ``SignatureDoesNotMatch``.
    """
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _AUTH.match(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        raise AdminError(403, "AccessDenied", "Access Denied. (the request is not signed with SigV4)")
    access_key, _day, region, service, signed, signature = match.groups()
    secret = secret_for(access_key)
    if secret is None:
        raise AdminError(403, "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")
    if _header(environ, "x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        raise AdminError(400, "XAmzContentSHA256Mismatch",
                         "The provided 'x-amz-content-sha256' header does not match what was computed.")
    stamp = _header(environ, "x-amz-date")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise AdminError(403, "AccessDenied", "Access Denied. (no valid X-Amz-Date)") from None
    if abs(_now() - when) > CLOCK_SKEW:
        raise AdminError(403, "RequestTimeTooSkewed",
                         "The difference between the request time and the server's time is too large.")
    headers = {name: _header(environ, name) for name in signed.split(";")}
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
        environ.get("PATH_INFO", "") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
    request = AWSRequest(method=environ["REQUEST_METHOD"], url=f"http://{headers.get('host', 'localhost')}{uri}",
                         data=body, headers=headers)
    request.context["timestamp"] = stamp
    auth = S3SigV4Auth(Credentials(access_key, secret), service, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise AdminError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                       "signature you provided. Check your key and signing method.")
    return access_key


def s3_action(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str]:
    """The IAM action and resource ARN moto checks for an S3 request (path-style addressing), from moto's own
    ``ACTION_MAP`` so the session-policy check here and moto's check agree.

    Returns:
        ``("s3:GetObject", "arn:aws:s3:::bucket/key")``; ``("s3:ListAllMyBuckets", "arn:aws:s3:::*")`` for ``GET /``.
    """
    from moto.s3.responses import ACTION_MAP

    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not bucket:
        return "s3:ListAllMyBuckets", "arn:aws:s3:::*"
    kind = "KEY" if key else "BUCKET"
    table = ACTION_MAP[kind].get(method, {})
    action = table.get("DEFAULT")
    for parameter, name in table.items():
        if parameter != "DEFAULT" and parameter in query:
            action = name
    if action is None:  # a bucket POST: DeleteObjects (?delete) or a browser upload form
        action = "DeleteObject" if "delete" in query else "PutObject"
    return f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"


def policy_allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether ``policy`` (AWS grammar) allows ``action`` on ``resource`` and denies it nowhere, by moto's policy
    evaluator (so conditions are judged as moto judges them)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource) == PermissionResult.PERMITTED


class MinioEmulator:
    """The WSGI app `minio_app` returns; see the module docstring for the model.

    Args:
        s3_upstream_url: the enforcing S3 + IAM endpoint (``http://127.0.0.1:PORT``), reached with the admin key.
        admin_access_key, admin_secret_key: the root credential (the S3 endpoint's admin key).
        region: the IAM region of the upstream.
    """

    def __init__(self, s3_upstream_url: str, admin_access_key: str, admin_secret_key: str,
                 region: str = "us-east-1") -> None:
        from provision.sandbox_server import Forward

        self.upstream = s3_upstream_url
        self.root = (admin_access_key, admin_secret_key)
        self.region = region
        self.forward = Forward(s3_upstream_url)
        self.lock = threading.RLock()
        self.users: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {
            name: {"doc": doc, "created": _now(), "updated": _now()} for name, doc in BUILTIN_POLICIES.items()}
        self.accounts: dict[str, dict[str, Any]] = {}
        self._iam: Any = None
        self.commands: dict[tuple[str, str], Callable[[str, dict[str, str], bytes], tuple[int, Any, bool]]] = {
            ("GET", "info"): self.info,
            ("PUT", "add-user"): self.add_user,
            ("GET", "user-info"): self.user_info,
            ("GET", "list-users"): self.list_users,
            ("DELETE", "remove-user"): self.remove_user,
            ("PUT", "set-user-status"): self.set_user_status,
            ("PUT", "add-canned-policy"): self.add_policy,
            ("GET", "info-canned-policy"): self.policy_info,
            ("GET", "list-canned-policies"): self.list_policies,
            ("DELETE", "remove-canned-policy"): self.remove_policy,
            ("POST", "idp/builtin/policy/attach"): self.attach,
            ("POST", "idp/builtin/policy/detach"): self.detach,
            ("PUT", "add-service-account"): self.add_account,
            ("GET", "list-service-accounts"): self.list_accounts,
            ("GET", "info-service-account"): self.account_info,
            ("DELETE", "delete-service-account"): self.delete_account,
        }
        self.self_service = {"add-service-account", "list-service-accounts", "info-service-account",
                             "delete-service-account"}  # a user may call these with its own key, for itself

    # ---- WSGI ---------------------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else (
            environ["wsgi.input"].read() if environ.get("wsgi.input_terminated") else b"")
        environ["wsgi.input"] = io.BytesIO(body)
        path = environ.get("PATH_INFO", "")
        if path.startswith(ADMIN_PREFIX):
            return self._admin(environ, body, path[len(ADMIN_PREFIX):], start_response)
        if path in ("/minio/health/live", "/minio/health/ready"):
            return self._answer(start_response, 200, b"", "text/plain")
        return self._s3(environ, path, start_response)

    def _answer(self, start_response: Any, status: int, data: bytes, content_type: str) -> list[bytes]:
        reason = {200: "OK", 204: "No Content"}.get(status, "Error")
        start_response(f"{status} {reason}", [("Content-Type", content_type), ("Content-Length", str(len(data))),
                                              ("Server", SERVER)])
        return [data]

    def _admin(self, environ: dict[str, Any], body: bytes, command: str, start_response: Any) -> list[bytes]:
        from minio.crypto import decrypt, encrypt

        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        try:
            caller = verify_sigv4(environ, body, self._secret_for)
            handler = self.commands.get((environ["REQUEST_METHOD"], command))
            if handler is None:
                raise AdminError(400, "XMinioAdminAPINotImplemented", f"admin command not emulated: {command}")
            if caller != self.root[0] and command not in self.self_service:
                raise AdminError(403, "AccessDenied", "Access Denied.")
            secret = self._secret_for(caller) or ""
            if body and command not in ("add-canned-policy",):
                try:
                    reader = SimpleNamespace(read=io.BytesIO(body).read, close=_nothing, release_conn=_nothing)
                    body = decrypt(reader, secret)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - any failure of the AEAD stream: not encrypted with our key
                    raise AdminError(400, "XMinioAdminConfigBadJSON",
                                     "JSON configuration provided is of incorrect format") from None
            with self.lock:
                try:
                    status, payload, encrypted = handler(caller, query, body)
                except (ValueError, AttributeError, TypeError) as exc:  # a request body of the wrong shape
                    raise AdminError(400, "XMinioAdminInvalidArgument", f"Invalid arguments specified. ({exc})"
                                     ) from None
        except AdminError as exc:
            data = json.dumps({"Code": exc.code, "Message": exc.message, "Resource": environ.get("PATH_INFO", ""),
                               "RequestId": secrets.token_hex(8).upper(), "HostId": ""}).encode()
            return self._answer(start_response, exc.status, data, "application/json")
        data = b"" if payload is None else json.dumps(payload).encode()
        if encrypted:
            return self._answer(start_response, status, encrypt(data, secret), "application/octet-stream")
        return self._answer(start_response, status, data, "application/json")

    def _s3(self, environ: dict[str, Any], path: str, start_response: Any) -> Any:
        match = _ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", "")) or _ACCESS_KEY.search(
            unquote(environ.get("QUERY_STRING", "")))
        with self.lock:
            account = self._live_account(match.group(1)) if match else None
            refusal = None
            if account is not None and not self._enabled(account):
                refusal = ("InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")
            elif account is not None and account["policy"] is not None:
                action, resource = s3_action(environ["REQUEST_METHOD"], path, parse_qs(
                    environ.get("QUERY_STRING", ""), keep_blank_values=True))
                if not policy_allows(account["policy"], action, resource):
                    refusal = ("AccessDenied", "Access Denied.")
        if refusal:
            data = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{refusal[0]}</Code><Message>{refusal[1]}'
                    f"</Message><Resource>{path}</Resource><RequestId>{secrets.token_hex(8).upper()}</RequestId>"
                    "</Error>").encode()
            return self._answer(start_response, 403, data, "application/xml")

        def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != "server"]
            return start_response(status, [*kept, ("Server", SERVER)], exc_info)

        return self.forward(environ, _start)

    # ---- state and the moto side ---------------------------------------------------------------------------------
    @property
    def iam(self) -> Any:
        """The boto3 IAM client of the upstream, with the root (admin) key."""
        if self._iam is None:
            import boto3

            self._iam = boto3.client("iam", endpoint_url=self.upstream, region_name=self.region,
                                     aws_access_key_id=self.root[0], aws_secret_access_key=self.root[1])
        return self._iam

    def _secret_for(self, access_key: str) -> str | None:
        if access_key == self.root[0]:
            return self.root[1]
        user = self.users.get(access_key)
        return user["secret"] if user and user["status"] == "enabled" else None

    def _user(self, name: str) -> dict[str, Any]:
        if name not in self.users:
            raise _missing("user", name)
        return self.users[name]

    def _policy(self, name: str) -> dict[str, Any]:
        if name not in self.policies:
            raise _missing("policy", name)
        return self.policies[name]

    def _enabled(self, account: dict[str, Any]) -> bool:
        parent = self.users.get(account["parent"])
        return account["status"] == "on" and (parent is None or parent["status"] == "enabled")

    def _live_account(self, key: str) -> dict[str, Any] | None:
        """The service account of ``key``; an expired one is deleted (as MinIO purges them) and None."""
        account = self.accounts.get(key)
        if account is not None and account["expiration"] is not None and account["expiration"] <= _now():
            self._drop_account(key)
            return None
        return account

    def _parent_policies(self, parent: str) -> dict[str, dict[str, Any]]:
        """The inline policies (name -> document) a service account of ``parent`` carries in moto."""
        if parent == self.root[0]:
            return {"minio-root": _ALL_S3}
        return {f"minio-{name}": self.policies[name]["doc"] for name in self.users[parent]["policies"]}

    def _sync(self, account: dict[str, Any]) -> None:
        """Make the service account's moto user carry exactly its parent's policies."""
        wanted = self._parent_policies(account["parent"])
        for name, doc in wanted.items():
            self.iam.put_user_policy(UserName=account["iam_user"], PolicyName=name, PolicyDocument=json.dumps(doc))
        for name in account["iam_policies"] - set(wanted):
            self.iam.delete_user_policy(UserName=account["iam_user"], PolicyName=name)
        account["iam_policies"] = set(wanted)

    def _sync_parent(self, parent: str) -> None:
        for account in list(self.accounts.values()):
            if account["parent"] == parent:
                self._sync(account)

    def _drop_account(self, key: str) -> None:
        account = self.accounts.pop(key)
        user = account["iam_user"]
        self.iam.delete_access_key(UserName=user, AccessKeyId=key)
        for name in account["iam_policies"]:
            self.iam.delete_user_policy(UserName=user, PolicyName=name)
        self.iam.delete_user(UserName=user)

    def _parent(self, caller: str, wanted: str | None) -> str:
        """The parent a caller names (default: itself): the root may name any user, a user only itself."""
        parent = wanted or caller
        if caller != self.root[0] and parent != caller:
            raise AdminError(403, "AccessDenied", "Access Denied.")
        if parent != self.root[0]:
            self._user(parent)
        return parent

    def _own_account(self, caller: str, key: str) -> dict[str, Any]:
        account = self._live_account(key)
        if account is None or (caller != self.root[0] and account["parent"] != caller):
            raise _missing("account", key)
        return account

    def _user_info(self, name: str) -> dict[str, Any]:
        user = self.users[name]
        info: dict[str, Any] = {"status": user["status"], "updatedAt": _rfc3339(user["updated"])}
        if user["policies"]:
            info["policyName"] = ",".join(user["policies"])
        return info

    def _account_view(self, key: str, account: dict[str, Any]) -> dict[str, Any]:
        view: dict[str, Any] = {"parentUser": account["parent"], "accountStatus": account["status"],
                                "impliedPolicy": account["policy"] is None, "accessKey": key,
                                "name": account["name"], "description": account["description"]}
        if account["expiration"] is not None:
            view["expiration"] = _rfc3339(account["expiration"])
        return view

    # ---- commands: (caller, query, decrypted body) -> (status, JSON payload or None, encrypt it?) -----------------
    def info(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET info``: a one-server deployment, online."""
        return 200, {"mode": "online", "region": self.region, "deploymentID": "provision-sandbox",
                     "servers": [{"state": "online", "version": "provision-sandbox"}]}, False

    def add_user(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``PUT add-user?accessKey=NAME``, encrypted ``{"secretKey", "status"}``: create or update a user."""
        name, request = query.get("accessKey", ""), json.loads(body or b"{}")
        secret = request.get("secretKey", "")
        if len(name) < 3 or name == self.root[0] or name in self.accounts:
            raise AdminError(400, "XMinioAdminInvalidAccessKey", "The access key is invalid.")
        if not 8 <= len(secret) <= 40:
            raise AdminError(400, "XMinioAdminInvalidSecretKey", "The secret key is invalid.")
        user = self.users.setdefault(name, {"policies": []})
        user.update(secret=secret, status=request.get("status") or "enabled", updated=_now())
        return 200, None, False

    def user_info(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET user-info?accessKey=NAME``: ``{"policyName": "a,b", "status", "updatedAt"}`` (plain)."""
        self._user(query.get("accessKey", ""))
        return 200, self._user_info(query["accessKey"]), False

    def list_users(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET list-users``: ``{name: user-info}``, encrypted."""
        return 200, {name: self._user_info(name) for name in self.users}, True

    def remove_user(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``DELETE remove-user?accessKey=NAME``: the user and its service accounts."""
        name = query.get("accessKey", "")
        self._user(name)
        for key in [k for k, a in self.accounts.items() if a["parent"] == name]:
            self._drop_account(key)
        del self.users[name]
        return 200, None, False

    def set_user_status(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``PUT set-user-status?accessKey=NAME&status=enabled|disabled``."""
        user = self._user(query.get("accessKey", ""))
        if query.get("status") not in ("enabled", "disabled"):
            raise AdminError(400, "XMinioAdminInvalidArgument", "Invalid arguments specified. (status)")
        user.update(status=query["status"], updated=_now())
        return 200, None, False

    def add_policy(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``PUT add-canned-policy?name=NAME`` with the policy JSON (plain): create or replace a canned policy; the
        service accounts of users it is attached to get the new document."""
        from moto.iam.policy_validation import IAMPolicyDocumentValidator

        name = query.get("name", "")
        if not name or "," in name:
            raise AdminError(400, "XMinioAdminInvalidArgument", "Invalid arguments specified. (name)")
        try:
            doc = json.loads(body)
            IAMPolicyDocumentValidator(json.dumps(doc)).validate()
        except Exception as exc:  # noqa: BLE001 - JSON or policy-grammar error
            raise AdminError(400, "XMinioMalformedPolicy", f"Policy has invalid resource. ({exc})") from None
        entry = self.policies.setdefault(name, {"created": _now()})
        entry.update(doc=doc, updated=_now())
        for user, record in self.users.items():
            if name in record["policies"]:
                self._sync_parent(user)
        return 200, None, False

    def policy_info(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET info-canned-policy?name=NAME``: the document; with ``v=2``:
        ``{"PolicyName", "Policy", "CreateDate", "UpdateDate"}``."""
        entry = self._policy(query.get("name", ""))
        if query.get("v") == "2":
            return 200, {"PolicyName": query["name"], "Policy": entry["doc"],
                         "CreateDate": _rfc3339(entry["created"]), "UpdateDate": _rfc3339(entry["updated"])}, False
        return 200, entry["doc"], False

    def list_policies(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET list-canned-policies``: ``{name: document}``."""
        return 200, {name: entry["doc"] for name, entry in self.policies.items()}, False

    def remove_policy(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``DELETE remove-canned-policy?name=NAME``; refused while a user has it attached."""
        name = query.get("name", "")
        self._policy(name)
        if any(name in user["policies"] for user in self.users.values()):
            raise AdminError(400, "XMinioAdminPolicyInUse", "The policy cannot be removed, as it is in use")
        del self.policies[name]
        return 200, None, False

    def _set_policies(self, name: str, policies: list[str]) -> None:
        user = self._user(name)
        user.update(policies=policies, updated=_now())
        self._sync_parent(name)

    def _change(self, body: bytes, attach: bool) -> tuple[int, Any, bool]:
        request = json.loads(body or b"{}")
        if request.get("group"):
            raise AdminError(400, "XMinioAdminAPINotImplemented", "groups are not emulated")
        name, policies = request.get("user", ""), request.get("policies") or []
        current = self._user(name)["policies"]
        for policy in policies if attach else ():
            self._policy(policy)
        changed = [p for p in policies if (p not in current) == attach]
        if not changed:
            raise AdminError(400, "XMinioAdminPolicyChangeAlreadyApplied",
                             "The specified policy change is already in effect.")
        self._set_policies(name, current + changed if attach else [p for p in current if p not in changed])
        return 200, {"policiesAttached" if attach else "policiesDetached": changed, "updatedAt": _rfc3339(_now())}, True

    def attach(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``POST idp/builtin/policy/attach``, encrypted ``{"policies": [...], "user"}``; answers encrypted
        ``{"policiesAttached": [...], "updatedAt"}``; attaching only policies already attached is refused (400)."""
        return self._change(body, attach=True)

    def detach(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``POST idp/builtin/policy/detach``, encrypted ``{"policies": [...], "user"}``; answers encrypted
        ``{"policiesDetached": [...], "updatedAt"}``; detaching only policies not attached is refused (400)."""
        return self._change(body, attach=False)

    def add_account(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``PUT add-service-account``, encrypted ``{"policy", "targetUser", "accessKey", "secretKey", "name",
        "description", "expiration", "status"}``: a new key for ``targetUser`` (default: the caller); answers encrypted
        ``{"credentials": {"accessKey", "secretKey", "expiration"}}``.

        The key is generated by moto: a chosen ``accessKey``/``secretKey`` is refused (400). ``expiration`` (RFC 3339)
        must be in the future."""
        request = json.loads(body or b"{}")
        if request.get("accessKey") or request.get("secretKey"):
            raise AdminError(400, "XMinioAdminInvalidArgument",
                             "the sandbox's MinIO generates service account keys: leave accessKey/secretKey out")
        parent = self._parent(caller, request.get("targetUser"))
        policy = request.get("policy") or None
        if isinstance(policy, str):
            policy = json.loads(policy)
        expiration = None
        if request.get("expiration"):
            try:
                expiration = datetime.fromisoformat(request["expiration"]).astimezone(timezone.utc)
            except ValueError:
                raise AdminError(400, "XMinioAdminInvalidArgument", "Invalid arguments: expiration") from None
            if expiration <= _now():
                raise AdminError(400, "XMinioAdminInvalidExpiration", "Invalid expiration: it must be in the future")
        status = {"enabled": "on", "on": "on", "disabled": "off", "off": "off"}.get(request.get("status") or "on")
        if status is None:
            raise AdminError(400, "XMinioAdminInvalidArgument", "Invalid arguments specified. (status)")
        iam_user = f"minio-sa-{secrets.token_hex(8)}"
        self.iam.create_user(UserName=iam_user, Path=IAM_PATH,
                             Tags=[{"Key": "minio-parent", "Value": parent[:256]}])
        key = self.iam.create_access_key(UserName=iam_user)["AccessKey"]
        account = {"parent": parent, "iam_user": iam_user, "iam_policies": set(), "policy": policy,
                   "expiration": expiration, "status": status, "name": request.get("name") or "",
                   "description": request.get("description") or ""}
        self.accounts[key["AccessKeyId"]] = account
        self._sync(account)
        return 200, {"credentials": {"accessKey": key["AccessKeyId"], "secretKey": key["SecretAccessKey"],
                                     "expiration": _rfc3339(expiration) if expiration else NEVER}}, True

    def list_accounts(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET list-service-accounts?user=NAME`` (default: the caller): encrypted ``{"accounts": [{"parentUser",
        "accountStatus", "impliedPolicy", "accessKey", "name", "description", "expiration"?}]}``."""
        parent = self._parent(caller, query.get("user"))
        keys = [k for k in list(self.accounts) if self._live_account(k) and self.accounts[k]["parent"] == parent]
        return 200, {"accounts": [self._account_view(k, self.accounts[k]) for k in keys]}, True

    def account_info(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``GET info-service-account?accessKey=KEY``: encrypted ``{"parentUser", "accountStatus", "impliedPolicy",
        "policy" (a JSON string: its own policy, or the parent's when implied), "name", "description",
        "expiration"?}``."""
        key = query.get("accessKey", "")
        account = self._own_account(caller, key)
        view = self._account_view(key, account)
        del view["accessKey"]
        if account["policy"] is not None:
            view["policy"] = json.dumps(account["policy"])
        else:
            statements = [s for doc in self._parent_policies(account["parent"]).values() for s in doc["Statement"]]
            view["policy"] = json.dumps({"Version": "2012-10-17", "Statement": statements})
        return 200, view, True

    def delete_account(self, caller: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """``DELETE delete-service-account?accessKey=KEY``: 204, the key stops working at once."""
        key = query.get("accessKey", "")
        self._own_account(caller, key)
        self._drop_account(key)
        return 204, None, False


def minio_app(s3_upstream_url: str, admin_access_key: str, admin_secret_key: str,
              region: str = "us-east-1") -> MinioEmulator:
    """The sandbox's MinIO as a WSGI app: MinIO's admin API (users, canned policies, attachment, service accounts)
    backed by the enforcing moto at ``s3_upstream_url``, every other request forwarded there.

    Args:
        s3_upstream_url: ``http://127.0.0.1:PORT`` of the moto server (IAM enforcement on).
        admin_access_key, admin_secret_key: the moto admin key; it is also MinIO's root credential (what
            ``MinioAdmin`` signs with and encrypts with).
        region: the upstream's region.

    Returns:
        A WSGI callable; no network I/O happens before the first request.
    """
    return MinioEmulator(s3_upstream_url, admin_access_key, admin_secret_key, region)


def request_handler() -> type:
    """werkzeug's request handler without the ``Server: Werkzeug/...`` header it adds to every answer (the app
    sets ``Server: MinIO``); pass it as ``make_server(..., request_handler=request_handler())``."""
    from werkzeug.serving import WSGIRequestHandler

    class MinioRequestHandler(WSGIRequestHandler):
        def send_response(self, code: int, message: str | None = None) -> None:
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

    return MinioRequestHandler
