"""A stand-in for CVAT's REST API (``/api/server/about``, ``/api/auth/login|logout``, ``/api/cloudstorages``) on
127.0.0.1, validating every write body with cvat-sdk's own models: `FakeCvat`, and the credentials it accepts."""

from __future__ import annotations

import json
import threading
import uuid
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "pat-" + uuid.uuid4().hex
USER, PASSWORD = "alice", "correct horse battery staple"


class FakeCvat:
    """``/api/server/about``, ``/api/auth/login|logout`` and ``/api/cloudstorages`` (GET list with filters, POST,
    PATCH /<id>). Every write body is validated with cvat-sdk's own models, unknown fields included; failures are
    answered with 400 and kept in ``errors`` for the test to assert on."""

    def __init__(self) -> None:
        self.storages: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.sessions: dict[str, str] = {}  # sessionid -> csrftoken
        self.auth_seen: list[str] = []
        self.files: dict[str, bytes] = {}
        self.multipart_seen = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.cvat+json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                ctype = self.headers.get("Content-Type", "")
                raw = self.rfile.read(length)
                if ctype.startswith("multipart/form-data"):
                    return fake.multipart(ctype, raw)
                if not ctype.startswith("application/json"):
                    fake.errors.append(f"{self.command} {self.path}: content type {ctype}")
                return json.loads(raw or b"null")

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization")
                if auth:
                    fake.auth_seen.append("token")
                    return auth == f"Bearer {TOKEN}"
                cookie = SimpleCookie(self.headers.get("Cookie", ""))
                session = cookie["sessionid"].value if "sessionid" in cookie else None
                if session not in fake.sessions:
                    return False
                fake.auth_seen.append("session")
                return self.command in ("GET", "HEAD") or self.headers.get("X-CSRFToken") == fake.sessions[session]

            def _route(self) -> None:
                url = urlsplit(self.path)
                fake.calls.append((self.command, url.path))
                if url.path == "/api/server/about" and self.command == "GET":
                    return self._send(200, {"name": "Computer Vision Annotation Tool", "description": "stand-in",
                                            "version": "2.80.0", "logo_url": "", "subtitle": ""})
                if url.path == "/api/auth/login" and self.command == "POST":
                    body = self._body()
                    if (body.get("username"), body.get("password")) != (USER, PASSWORD):
                        return self._send(400, {"non_field_errors": ["Unable to log in."]})
                    session, csrf = uuid.uuid4().hex, uuid.uuid4().hex
                    fake.sessions[session] = csrf
                    self.send_response(200)
                    data = json.dumps({"key": uuid.uuid4().hex}).encode()
                    self.send_header("Content-Type", "application/vnd.cvat+json")
                    self.send_header("Set-Cookie", f"sessionid={session}; Path=/")
                    self.send_header("Set-Cookie", f"csrftoken={csrf}; Path=/")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                if not self._authorised():
                    return self._send(401, {"detail": "Authentication credentials were not provided."})
                if url.path == "/api/auth/logout" and self.command == "POST":
                    return self._send(200, {"detail": "Successfully logged out."})
                if url.path == "/api/cloudstorages" and self.command == "GET":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    found = [s for s in fake.storages.values()
                             if all(s[k] == query[k] for k in ("resource", "provider_type") if k in query)]
                    return self._send(200, {"count": len(found), "next": None, "previous": None,
                                            "results": [fake.read(s) for s in found]})
                if url.path == "/api/cloudstorages" and self.command == "POST":
                    body = fake.validate(self._body(), patch=False)
                    if body is None:
                        return self._send(400, {"detail": fake.errors[-1]})
                    sid = len(fake.storages) + 1
                    fake.storages[sid] = dict(body, id=sid)
                    return self._send(201, fake.read(fake.storages[sid]))
                if url.path.startswith("/api/cloudstorages/") and self.command == "PATCH":
                    sid = int(url.path.rsplit("/", 1)[1])
                    body = fake.validate(self._body(), patch=True)
                    if body is None:
                        return self._send(400, {"detail": fake.errors[-1]})
                    fake.storages[sid].update(body)
                    return self._send(200, fake.read(fake.storages[sid]))
                return self._send(404, {"detail": "Not found."})

            do_GET = do_POST = do_PATCH = _route

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def multipart(self, ctype: str, raw: bytes) -> dict[str, Any]:
        """A multipart/form-data body as fields (the stdlib's MIME parser); a file part becomes a BytesIO (kept in
        ``files``), a repeated field (``manifests``) a list."""
        import io
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if part.get_filename():
                self.files[name] = data
                fields[name] = io.BytesIO(data)
            elif name == "manifests":
                fields.setdefault(name, []).append(data.decode())
            else:
                fields[name] = data.decode()
        self.multipart_seen = True
        return fields

    def validate(self, body: Any, patch: bool) -> dict[str, Any] | None:
        """The body through cvat-sdk's model (types, enums, lengths, required fields), unknown fields refused."""
        from cvat_sdk.api_client import Configuration, models
        from cvat_sdk.api_client.model_utils import validate_and_convert_types

        model = models.PatchedCloudStorageWriteRequest if patch else models.CloudStorageWriteRequest
        try:
            unknown = set(body) - set(model.attribute_map)
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            parsed = validate_and_convert_types(body, (model,), ["body"], True, True, Configuration())
        except Exception as exc:  # noqa: BLE001 — reported to the test
            self.errors.append(f"{model.__name__}: {exc}")
            return None
        return {k: (v.value if hasattr(v, "value") else v) for k, v in parsed.to_dict().items() if k != "key_file"}

    @staticmethod
    def read(s: dict[str, Any]) -> dict[str, Any]:
        """CVAT's read view: no credentials."""
        return {"id": s["id"], "provider_type": s["provider_type"], "resource": s["resource"],
                "display_name": s["display_name"], "credentials_type": s["credentials_type"],
                "specific_attributes": s.get("specific_attributes", ""), "manifests": s.get("manifests", []),
                "description": "", "owner": {"username": USER, "id": 1, "url": "", "first_name": "",
                                             "last_name": ""},
                "created_date": "2026-01-01T00:00:00Z", "updated_date": "2026-01-01T00:00:00Z",
                "organization": None}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

