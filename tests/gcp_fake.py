"""A fake of the Google APIs that have no emulator, for the GCS tests, started by the test on 127.0.0.1 with free
ports; the SDKs talk to it for real and it records every request with its body.

- IAM admin (``google.iam.admin.v1.IAM`` over gRPC, the only transport google-cloud-iam 2.27 generates for
  ``iam_admin_v1``): service accounts get/create/patch (display name, description)/delete, keys
  create/list/delete. Keys are real RSA keys; the JSON key file it hands out names this fake's token endpoint.
  ``forbid_keys = True`` answers key creation with FAILED_PRECONDITION, as an organisation policy
  (constraints/iam.disableServiceAccountKeyCreation) does.
- HTTP, one port: the OAuth token endpoint (``POST /token``: verifies the JWT assertion's RS256 signature against
  the live keys, so a deleted key stops working), Cloud Storage HMAC keys (``/storage/v1/projects/<p>/hmacKeys``,
  which the GCS emulator lacks), and every other Cloud Storage request forwarded unchanged to the emulator
  (``upstream``). Bucket IAM is enforced here, per caller, from the policy the emulator stores (it stores policies
  but enforces nothing): the admin may do anything; a service account only what its bucket roles allow
  (objectViewer, objectAdmin, legacyBucketReader); no project-level permission. A denial is a 403 like Google's.
  setIamPolicy gets Google's checks too: a stale etag is refused with 412, every write gets a new etag, and a
  member naming a service account of the project that does not exist (yet) is refused with 400.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import secrets
import string
import threading
from concurrent import futures
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ADMIN = "admin"
ROLE_PERMISSIONS = {
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectAdmin": {"storage.objects.get", "storage.objects.list", "storage.objects.create",
                                  "storage.objects.delete", "storage.objects.update"},
    "roles/storage.legacyBucketReader": {"storage.buckets.get", "storage.objects.list"},
}
"""The permissions of the bucket roles the tests meet (https://cloud.google.com/storage/docs/access-control/iam-roles)."""
_READ_RPCS = ("Get", "List")


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_rsa_key() -> tuple[str, Any]:
    """A fresh RSA-2048 key: (PKCS#8 PEM of the private key, the public key object)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


class FakeGoogle:
    """The fake (see the module docstring).

    Args:
        upstream: the GCS emulator's URL (``http://127.0.0.1:PORT``; the sandbox's logging proxy).
        project: the project id the fake serves.

    Attributes:
        requests: every request, in order: ``{"api": "iam"|"storage"|"token", "method", "path", "query", "body",
            "caller", "status", "mutating"}`` (``body``: the JSON body as a dict, the request message as a dict
            for gRPC, ``None`` for other bodies).
        forbid_keys: answer CreateServiceAccountKey with FAILED_PRECONDITION.
        unknown_for: email -> how many more setIamPolicy writes naming that service account get 400 "does not
            exist" (IAM propagation delay after its creation).
        on_set_iam: called once as ``on_set_iam(bucket)`` before the next setIamPolicy is checked (a concurrent
            writer), then cleared.
        service_accounts: email -> the account's fields.
        keys: key id -> ``{"email", "public_key", "type": "USER_MANAGED"|"SYSTEM_MANAGED"}`` (the admin's too).
        hmac_keys: access id -> metadata (as the JSON API returns it).
        tokens: access token -> email.
        lose_answer_at: the k-th mutating request from now (any API) is carried out but its answer is lost: a 503
            (HTTP) or UNAVAILABLE (gRPC) goes back instead; None: off. `lost` counts the answers lost.
        on_lose: called (no arguments, in the serving thread) once that request was carried out and before its
            answer goes back; a test kills the client there (a run killed right after its k-th mutating request,
            before it could see the answer). None: nothing is called.
    """

    def __init__(self, upstream: str, project: str) -> None:
        self.upstream = upstream
        self.project = project
        self.requests: list[dict[str, Any]] = []
        self.forbid_keys = False
        self.service_accounts: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.hmac_keys: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.unknown_for: dict[str, int] = {}
        self.on_set_iam: Any = None
        self.lose_answer_at: int | None = None
        self.lost = 0
        self.on_lose: Any = None
        self.admin_email = f"{ADMIN}@{project}.iam.gserviceaccount.com"
        self.lock = threading.Lock()
        self._http: Any = None
        self._grpc: Any = None
        self.http_url = ""
        self.iam_endpoint = ""

    # ---- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeGoogle:
        """Bind both servers on 127.0.0.1 (free ports) and serve in background threads."""
        import grpc
        from werkzeug.serving import make_server

        from provision.sandbox_server import Forward

        self._forward = Forward(self.upstream)
        self._http = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_quiet_handler())
        self.http_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(8))
        self._grpc.add_generic_rpc_handlers([self._iam_handlers()])
        port = self._grpc.add_secure_port("127.0.0.1:0",
                                          grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP))
        self._grpc.start()
        self.iam_endpoint = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop both servers."""
        if self._http is not None:
            self._http.shutdown()
        if self._grpc is not None:
            self._grpc.stop(grace=None)

    # ---- helpers for tests --------------------------------------------------------------------------------
    def write_admin_credentials(self, path: Path) -> Path:
        """Write the admin's service-account JSON (a real RSA key, ``token_uri`` = this fake) to ``path``; point
        ``GOOGLE_APPLICATION_CREDENTIALS`` at it and google-auth runs for real against the fake."""
        key_id = secrets.token_hex(20)
        pem, public = new_rsa_key()
        self.keys[key_id] = {"email": self.admin_email, "public_key": public, "type": "USER_MANAGED"}
        path.write_text(json.dumps(self._key_json(self.admin_email, key_id, pem)))
        return path

    def add_service_account(self, email: str) -> None:
        """Make a service account exist already (as if made by someone else)."""
        self.service_accounts[email] = {"email": email, "name": f"projects/{self.project}/serviceAccounts/{email}",
                                        "project_id": self.project, "unique_id": str(secrets.randbits(60))}
        self.keys[secrets.token_hex(20)] = {"email": email, "public_key": None, "type": "SYSTEM_MANAGED"}

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self.lock:
            self.requests = []

    def mutating(self, api: str | None = None) -> list[dict[str, Any]]:
        """The recorded mutating requests (of ``api`` only, when given)."""
        return [r for r in self.requests if r["mutating"] and (api is None or r["api"] == api)]

    def user_keys(self, email: str) -> list[str]:
        """Ids of the live user-managed keys of ``email``."""
        return [k for k, v in self.keys.items() if v["email"] == email and v["type"] == "USER_MANAGED"]

    def bucket_policy(self, bucket: str) -> dict[str, Any]:
        """The bucket's IAM policy as the emulator stores it."""
        return self._upstream_json("GET", f"/storage/v1/b/{bucket}/iam")

    def _key_json(self, email: str, key_id: str, pem: str) -> dict[str, str]:
        return {"type": "service_account", "project_id": self.project, "private_key_id": key_id, "private_key": pem,
                "client_email": email, "client_id": str(secrets.randbits(60)),
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": f"{self.http_url}/token",
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
                "universe_domain": "googleapis.com"}

    def _record(self, **entry: Any) -> dict[str, Any]:
        with self.lock:
            self.requests.append(entry)
            entry["lose"] = False
            if entry["mutating"] and self.lose_answer_at is not None:
                self.lose_answer_at -= 1
                if self.lose_answer_at <= 0:
                    entry["lose"], self.lose_answer_at = True, None
                    self.lost += 1
        return entry

    def _lose_hook(self) -> None:
        if self.on_lose is not None:
            self.on_lose()

    def mutating_count(self) -> int:
        """How many mutating requests (any API) were recorded."""
        return len(self.mutating())

    # ---- identity -----------------------------------------------------------------------------------------
    def _verify_jwt(self, token: str) -> str | None:
        """The email of a JWT signed (RS256) by a live key whose owner is its issuer, else None."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(_b64url(header_b64))
            payload = json.loads(_b64url(payload_b64))
            key = self.keys.get(header.get("kid", ""))
            if key is None or key["public_key"] is None or key["email"] != payload.get("iss"):
                return None
            key["public_key"].verify(_b64url(signature_b64), f"{header_b64}.{payload_b64}".encode(),
                                     padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature, json.JSONDecodeError):
            return None
        return str(payload["iss"])

    def _caller(self, authorization: str | None) -> str | None:
        """The email behind an ``Authorization: Bearer`` value (an access token from `/token`, or a self-signed
        JWT as google-auth sends to gRPC APIs), else None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[len("Bearer "):]
        if token in self.tokens:
            return self.tokens[token]
        return self._verify_jwt(token) if token.count(".") == 2 else None

    # ---- HTTP: token, HMAC keys, storage ------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        body: Any = None
        if "json" in environ.get("CONTENT_TYPE", "") and raw:
            body = json.loads(raw)
        caller = self._caller(environ.get("HTTP_AUTHORIZATION"))
        if path == "/token" and method == "POST":
            return self._token(parse_qs(raw.decode()), start_response)
        entry = self._record(api="storage", method=method, path=path, query=query, body=body, caller=caller,
                             mutating=method not in ("GET", "HEAD"), status=None)

        def reply(status: int, payload: Any = None) -> Any:
            if entry["lose"]:  # carried out; the answer is lost on the way back
                self._lose_hook()
                status, payload = 503, _error(503, "the answer was lost (injected by the fake)")
            entry["status"] = status
            data = b"" if payload is None else json.dumps(payload).encode()
            reason = http.client.responses.get(status, "")
            start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                                  ("Content-Length", str(len(data)))])
            return [data]

        if caller is None:
            return reply(401, _error(401, "Anonymous caller does not have access: invalid or missing credentials"))
        hmac = re.match(r"^/storage/v1/projects/([^/]+)/hmacKeys(?:/([^/]+))?$", path)
        if hmac:
            return self._hmac(method, hmac.group(1), hmac.group(2), parse_qs(query), body, caller, reply)
        permission, bucket = _storage_permission(method, path)
        if caller != self.admin_email and not self._allowed(caller, permission, bucket):
            return reply(403, _error(403, f"{caller} does not have {permission} access to "
                                          f"{'the project' if bucket is None else f'the bucket {bucket}'}."))
        if permission == "storage.buckets.setIamPolicy" and bucket is not None and isinstance(body, dict):
            refused = self._check_policy_write(bucket, body)
            if refused is not None:
                return reply(*refused)
            body = dict(body, etag=base64.b64encode(secrets.token_bytes(6)).decode())  # every write: a new etag
            raw = json.dumps(body).encode()
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))

        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            entry["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        if entry["lose"]:
            b"".join(self._forward(environ, lambda *a, **k: None))  # carried out upstream, answer dropped
            return reply(503)
        return self._forward(environ, start)

    def _check_policy_write(self, bucket: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """What Cloud Storage checks on setIamPolicy that the emulator does not: the etag (412 when the policy
        changed since it was read) and that each service-account member of this project exists (400), counting
        `unknown_for` down first (IAM has not propagated a new account yet)."""
        if self.on_set_iam is not None:
            hook, self.on_set_iam = self.on_set_iam, None
            hook(bucket)
        try:
            current = self.bucket_policy(bucket)
        except LookupError:
            return 404, _error(404, "The specified bucket does not exist.")
        if body.get("etag") and body["etag"] != current.get("etag"):
            return 412, _error(412, "Precondition Failed")
        for binding in body.get("bindings", []):
            for member in binding.get("members", []):
                email = member.removeprefix("serviceAccount:")
                if member == email or not email.endswith(f"@{self.project}.iam.gserviceaccount.com"):
                    continue
                if email in self.service_accounts and self.unknown_for.get(email, 0) > 0:
                    self.unknown_for[email] -= 1
                elif email in self.service_accounts:
                    continue
                return 400, _error(400, f"Service account {email} does not exist.")
        return None

    def _allowed(self, caller: str, permission: str, bucket: str | None) -> bool:
        if bucket is None:
            return False  # no project-level role is ever granted to a provisioned service account
        try:
            policy = self.bucket_policy(bucket)
        except LookupError:
            return False
        member = f"serviceAccount:{caller}"
        granted = set()
        for binding in policy.get("bindings", []):
            if member in binding.get("members", []) and "condition" not in binding:
                granted |= ROLE_PERMISSIONS.get(binding["role"], set())
        return permission in granted

    def _upstream_json(self, method: str, path: str) -> dict[str, Any]:
        parts = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status == 404:
            raise LookupError(path)
        return json.loads(data)  # type: ignore[no-any-return]

    def _token(self, form: dict[str, list[str]], start_response: Any) -> Any:
        assertion = (form.get("assertion") or [""])[0]
        email = self._verify_jwt(assertion)
        self._record(api="token", method="POST", path="/token", query="", body={"grant_type": form.get(
            "grant_type", [""])[0]}, caller=email, mutating=False, status=200 if email else 400)
        if email is None:
            payload: dict[str, Any] = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            status = "400 Bad Request"
        else:
            token = f"ya29.fake-{secrets.token_urlsafe(24)}"
            self.tokens[token] = email
            payload = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
            status = "200 OK"
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _hmac(self, method: str, project: str, access_id: str | None, query: dict[str, list[str]], body: Any,
              caller: str, reply: Any) -> Any:
        if caller != self.admin_email:
            return reply(403, _error(403, f"{caller} does not have storage.hmacKeys access to project {project}."))
        if access_id is None and method == "POST":
            email = (query.get("serviceAccountEmail") or [""])[0]
            if email not in self.service_accounts:
                return reply(404, _error(404, f"Service account {email} not found."))
            access_id = "GOOG1E" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(55))
            meta = {"kind": "storage#hmacKeyMetadata", "id": f"{project}/{access_id}", "accessId": access_id,
                    "projectId": project, "serviceAccountEmail": email, "state": "ACTIVE", "timeCreated": _now(),
                    "updated": _now(), "etag": base64.b64encode(b"1").decode()}
            self.hmac_keys[access_id] = meta
            secret = base64.b64encode(secrets.token_bytes(30)).decode()
            return reply(200, {"kind": "storage#hmacKey", "metadata": meta, "secret": secret})
        if access_id is None and method == "GET":
            email = (query.get("serviceAccountEmail") or [None])[0]
            items = [m for m in self.hmac_keys.values() if email in (None, m["serviceAccountEmail"])]
            return reply(200, {"kind": "storage#hmacKeysMetadata", "items": items})
        meta = self.hmac_keys.get(access_id or "")
        if meta is None:
            return reply(404, _error(404, "Access ID not found."))
        if method == "GET":
            return reply(200, meta)
        if method == "PUT":
            meta["state"] = body.get("state", meta["state"])
            meta["updated"] = _now()
            meta["etag"] = base64.b64encode(secrets.token_bytes(4)).decode()
            return reply(200, meta)
        if method == "DELETE":
            if meta["state"] != "INACTIVE":
                return reply(400, _error(400, f"Cannot delete keys in '{meta['state']}' state."))
            del self.hmac_keys[meta["accessId"]]
            return reply(204)
        return reply(405, _error(405, "method not allowed"))

    # ---- gRPC: IAM admin ----------------------------------------------------------------------------------
    def _iam_handlers(self) -> Any:
        import grpc
        from google.cloud.iam_admin_v1 import types
        from google.protobuf import empty_pb2

        def rpc(name: str, request_type: Any, response_serializer: Any) -> tuple[str, Any]:
            handler = getattr(self, f"_rpc_{name}")

            def call(request: Any, context: Any) -> Any:
                metadata = dict(context.invocation_metadata())
                caller = self._caller(metadata.get("authorization"))
                path = getattr(request, "name", "") or getattr(getattr(request, "service_account", None), "name", "")
                entry = self._record(api="iam", method=name, path=path, query="",
                                     body=type(request).to_dict(request), caller=caller,
                                     mutating=not name.startswith(_READ_RPCS), status=None)
                if caller is None:
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
                if caller != self.admin_email:
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied for {caller}.")
                with self.lock:
                    answer = handler(request, context, types, grpc)
                if entry["lose"]:  # carried out; the answer is lost on the way back
                    self._lose_hook()
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the answer was lost (injected by the fake)")
                return answer

            return name, grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=request_type.deserialize, response_serializer=response_serializer)

        empty = empty_pb2.Empty.SerializeToString
        handlers = dict([
            rpc("GetServiceAccount", types.GetServiceAccountRequest, types.ServiceAccount.serialize),
            rpc("CreateServiceAccount", types.CreateServiceAccountRequest, types.ServiceAccount.serialize),
            rpc("PatchServiceAccount", types.PatchServiceAccountRequest, types.ServiceAccount.serialize),
            rpc("DeleteServiceAccount", types.DeleteServiceAccountRequest, empty),
            rpc("CreateServiceAccountKey", types.CreateServiceAccountKeyRequest, types.ServiceAccountKey.serialize),
            rpc("ListServiceAccountKeys", types.ListServiceAccountKeysRequest,
                types.ListServiceAccountKeysResponse.serialize),
            rpc("DeleteServiceAccountKey", types.DeleteServiceAccountKeyRequest, empty),
        ])
        return grpc.method_handlers_generic_handler("google.iam.admin.v1.IAM", handlers)

    def _account(self, name: str, context: Any, grpc: Any) -> dict[str, Any]:
        match = re.match(r"^projects/([^/]+)/serviceAccounts/([^/]+)$", name)
        if not match:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource name {name!r}.")
        account = self.service_accounts.get(match.group(2))
        if account is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Unknown service account {match.group(2)}")
        return account

    def _rpc_GetServiceAccount(self, request: Any, context: Any, types: Any, grpc: Any) -> Any:  # noqa: N802
        return types.ServiceAccount(**self._account(request.name, context, grpc))

    def _rpc_CreateServiceAccount(self, request: Any, context: Any, types: Any, grpc: Any) -> Any:  # noqa: N802
        project = request.name.removeprefix("projects/")
        if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])$", request.account_id) or not 6 <= len(request.account_id) <= 30:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid account id {request.account_id!r}.")
        email = f"{request.account_id}@{project}.iam.gserviceaccount.com"
        if email in self.service_accounts:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Service account {request.account_id} already exists.")
        self.add_service_account(email)
        self.service_accounts[email].update(display_name=request.service_account.display_name,
                                            description=request.service_account.description)
        return types.ServiceAccount(**self.service_accounts[email])

    def _rpc_PatchServiceAccount(self, request: Any, context: Any, types: Any, grpc: Any) -> Any:  # noqa: N802
        account = self._account(request.service_account.name, context, grpc)
        for path in request.update_mask.paths:
            if path not in ("display_name", "description"):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Cannot update field {path!r}.")
            account[path] = getattr(request.service_account, path)
        return types.ServiceAccount(**account)

    def _rpc_DeleteServiceAccount(self, request: Any, context: Any, types: Any, grpc: Any) -> bytes:  # noqa: N802
        account = self._account(request.name, context, grpc)
        del self.service_accounts[account["email"]]
        for key_id in [k for k, v in self.keys.items() if v["email"] == account["email"]]:
            del self.keys[key_id]
        from google.protobuf import empty_pb2

        return empty_pb2.Empty()  # type: ignore[return-value]

    def _rpc_CreateServiceAccountKey(self, request: Any, context: Any, types: Any, grpc: Any) -> Any:  # noqa: N802
        account = self._account(request.name, context, grpc)
        if self.forbid_keys:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "Key creation is not allowed on this service "
                          "account. constraints/iam.disableServiceAccountKeyCreation")
        key_id = secrets.token_hex(20)
        pem, public = new_rsa_key()
        self.keys[key_id] = {"email": account["email"], "public_key": public, "type": "USER_MANAGED",
                             "created": datetime.now(timezone.utc)}
        return types.ServiceAccountKey(
            name=f"{request.name}/keys/{key_id}", valid_after_time=self.keys[key_id]["created"],
            private_key_type=request.private_key_type,
            key_algorithm=request.key_algorithm, key_type=types.ListServiceAccountKeysRequest.KeyType.USER_MANAGED,
            private_key_data=json.dumps(self._key_json(account["email"], key_id, pem)).encode())

    def _rpc_ListServiceAccountKeys(self, request: Any, context: Any, types: Any, grpc: Any) -> Any:  # noqa: N802
        account = self._account(request.name, context, grpc)
        kinds = types.ListServiceAccountKeysRequest.KeyType
        wanted = {kinds(t).name for t in request.key_types} or {"USER_MANAGED", "SYSTEM_MANAGED"}
        keys = [types.ServiceAccountKey(name=f"{request.name}/keys/{key_id}", key_type=kinds[v["type"]],
                                        valid_after_time=v.get("created"))
                for key_id, v in self.keys.items() if v["email"] == account["email"] and v["type"] in wanted]
        return types.ListServiceAccountKeysResponse(keys=keys)

    def _rpc_DeleteServiceAccountKey(self, request: Any, context: Any, types: Any, grpc: Any) -> Any:  # noqa: N802
        match = re.match(r"^(projects/[^/]+/serviceAccounts/[^/]+)/keys/([^/]+)$", request.name)
        if not match:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid key name {request.name!r}.")
        account = self._account(match.group(1), context, grpc)
        key = self.keys.get(match.group(2))
        if key is None or key["email"] != account["email"]:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Unknown key {match.group(2)}")
        del self.keys[match.group(2)]
        from google.protobuf import empty_pb2

        return empty_pb2.Empty()


def _quiet_handler() -> Any:
    from werkzeug.serving import WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log(self, *args: Any) -> None:  # the fake keeps its own log
            pass

    return Quiet


def _error(code: int, message: str) -> dict[str, Any]:
    """A Cloud Storage JSON API error body."""
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "domain": "global",
                                                                    "reason": "forbidden" if code == 403 else "x"}]}}


def _storage_permission(method: str, path: str) -> tuple[str, str | None]:
    """The IAM permission a Cloud Storage JSON API request needs, and its bucket (None: a project-level call)."""
    for prefix in ("/upload/storage/v1", "/download/storage/v1", "/storage/v1"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix):]
            break
    if path == "/b":
        return ("storage.buckets.create" if method == "POST" else "storage.buckets.list"), None
    match = re.match(r"^/b/([^/]+)(/.*)?$", path)
    if not match:
        return "storage.unknown", None
    bucket, rest = match.group(1), match.group(2) or ""
    if rest == "":
        verb = {"GET": "get", "DELETE": "delete"}.get(method, "update")
        return f"storage.buckets.{verb}", bucket
    if rest == "/iam":
        return ("storage.buckets.getIamPolicy" if method == "GET" else "storage.buckets.setIamPolicy"), bucket
    if rest.startswith("/iam/"):
        return "storage.buckets.get", bucket
    if rest == "/o":
        return ("storage.objects.list" if method == "GET" else "storage.objects.create"), bucket
    if any(word in rest for word in ("/copyTo/", "/rewriteTo/", "/compose")):
        return "storage.objects.create", bucket
    verb = {"GET": "get", "DELETE": "delete"}.get(method, "update")
    return f"storage.objects.{verb}", bucket
