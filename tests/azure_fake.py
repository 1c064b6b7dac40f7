"""A fake Azure Resource Manager for tests: the management plane has no emulator, so this is a small HTTPS server on
127.0.0.1 (free port) that the real azure-mgmt-* clients and azure-identity talk to over HTTP, implementing just the
routes `provision azure` calls, and recording every request (method, path, query, JSON body) for assertions.

- Token: azure-identity's App Service managed-identity path (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` → ``GET
  /msi/token``), so ``DefaultAzureCredential`` runs for real; every ARM request must carry that bearer token.
- Subscriptions list; resource groups (GET/PUT/DELETE, list resources); storage accounts (GET/PUT/PATCH/DELETE,
  ``checkNameAvailability``, ``listKeys``, ``regenerateKey``); blob containers (GET/PUT/PATCH/DELETE, list); role
  assignments (GET/PUT/DELETE at any scope). A PUT of an account answers 200 with ``provisioningState: Succeeded``
  so the SDK's long-running operation ends at once.
- Linked to Azurite (optional): an account named like the Azurite account gets Azurite's keys from ``listKeys`` and
  Azurite's URL as ``primaryEndpoints.blob``, and a container PUT/DELETE also creates/deletes it in Azurite, so a
  management-mode run issues a SAS that Azurite really checks.
- Accounts not linked to Azurite get the fake itself as their (path-style) blob endpoint, where it answers List
  Blobs only (an empty listing for a container it knows), so ``destroy`` can check that a container is empty; a
  request there with an account SAS whose signature matches neither current key gets 403 (so a regenerated key
  revokes a SAS as on Azure).
- Faults: `fail` answers the k-th mutating request from now (and the ``count - 1`` after it) with an error.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-arm-token"
IDENTITY_HEADER = "fake-identity-header"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
_ACCOUNT = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.storage/storageaccounts/"
                      r"([^/]+)(/.*)?$")
_GROUP = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)(/resources)?$")
_ROLE = re.compile(r"^(/.*)/providers/microsoft\.authorization/roleassignments/([^/]+)$")


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


class FakeArm:
    """The fake ARM server.

    Args:
        cert, key: PEM certificate and key to serve HTTPS with (trust ``cert`` with ``REQUESTS_CA_BUNDLE``).
        subscriptions: the subscription ids the subscriptions list returns.
        azurite: the sandbox's `provision.sandbox.AzureEndpoint`, to link accounts of the same name to Azurite.

    Attributes:
        url: ``https://127.0.0.1:PORT``.
        requests: every request: ``{"method", "path", "query", "body", "status", "mutating"}`` (path as sent).
        groups, accounts, containers, roles: the fake's resources (dicts of JSON bodies).
        taken: account names "taken by another tenant" (``checkNameAvailability`` says so).
    """

    def __init__(self, cert: Path, key: Path, subscriptions: list[str] | None = None, azurite: Any = None) -> None:
        self.cert, self.key = cert, key
        self.subscriptions = [SUBSCRIPTION] if subscriptions is None else subscriptions
        self.azurite = azurite
        self.requests: list[dict[str, Any]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, str]] = {}
        self.containers: dict[tuple[str, str], dict[str, Any]] = {}
        self.roles: dict[str, dict[str, Any]] = {}
        self.taken: set[str] = set()
        self.lock = threading.Lock()
        self._fail_at: int | None = None
        self._fail_count = 0
        self._fail_status = 500
        self._fail_code = "InternalError"
        self.server: ThreadingHTTPServer | None = None

    # ---- control ----------------------------------------------------------------------------------------------
    def start(self) -> FakeArm:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                fake._handle(self)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, at: int | None, count: int = 1, status: int = 500, code: str = "InternalError") -> None:
        """Answer the ``at``-th mutating request from now and the ``count - 1`` after it with ``status``."""
        with self.lock:
            self._fail_at, self._fail_count, self._fail_status, self._fail_code = at, count, status, code

    def reset_log(self) -> None:
        with self.lock:
            self.requests = []

    def mutating(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["mutating"]]

    def add_account(self, group: str, name: str, location: str = "westeurope", **properties: Any) -> None:
        """An existing (to be adopted) account with these ARM ``properties`` (camelCase keys)."""
        self.groups.setdefault(group.lower(), {"name": group, "location": location})
        self.accounts[name] = self._account_body(SUBSCRIPTION, group, name, {
            "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "location": location, "properties": properties})

    # ---- dispatch ---------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        path = parts.path.rstrip("/")
        low = path.lower()
        method = h.command
        mutating = method in ("PUT", "PATCH", "DELETE") or (method == "POST" and low.endswith("/regeneratekey"))
        entry = {"method": method, "path": path, "query": parse_qs(parts.query), "body": body, "mutating": mutating}
        inject = None
        with self.lock:
            if low != "/msi/token":
                self.requests.append(entry)
            if mutating and self._fail_at is not None:
                self._fail_at -= 1
                if self._fail_at <= 0:
                    inject = (self._fail_status, self._fail_code)
                    self._fail_count -= 1
                    if self._fail_count <= 0:
                        self._fail_at = None
        segments = low.strip("/").split("/")
        if low == "/msi/token":
            status, reply = self._token(h, parts.query)
        elif len(segments) == 2 and segments[0] in self.accounts and method == "GET":
            status, reply = self._sas_refused(segments[0], parts.query) or self._list_blobs(segments[0], segments[1])
        elif h.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, reply = 401, _error("InvalidAuthenticationToken", "no or wrong bearer token")
        elif inject:
            status, reply = inject[0], _error(inject[1], "injected by the fake ARM server")
        else:
            try:
                with self.lock:
                    status, reply = self._route(method, low, path, body)
            except Exception as exc:  # noqa: BLE001 - a bug in the fake must show as a 500, not a hang
                status, reply = 500, _error("FakeError", f"{type(exc).__name__}: {exc}")
        entry["status"] = status
        data = b"" if reply is None else reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/xml" if isinstance(reply, bytes) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-ms-request-id", secrets.token_hex(8))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def _sas_refused(self, account: str, query: str) -> tuple[int, bytes] | None:
        """A request with an account SAS (``sig=`` in the query) whose signature matches neither of the account's
        current keys: 403 AuthenticationFailed, as Azure answers once the signing key was regenerated. None when
        there is no SAS or it is valid (expiry is not checked)."""
        fields = {k: v[0] for k, v in parse_qs(query).items()}
        if "sig" not in fields:
            return None
        from azure.storage.blob import generate_account_sas

        for key in self._keys(account).values():
            again = generate_account_sas(account, key, resource_types=fields.get("srt", ""),
                                         permission=fields.get("sp", ""), expiry=fields.get("se", ""),
                                         start=fields.get("st"), services=fields.get("ss", "b"),
                                         protocol=fields.get("spr"))
            if parse_qs(again)["sig"][0] == fields["sig"]:
                return None
        return 403, (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>'
                     b"Signature did not match.</Message></Error>")

    def _list_blobs(self, account: str, container: str) -> tuple[int, bytes]:
        """List Blobs on the stub data plane: every container the fake knows is empty."""
        if (account, container) not in self.containers:
            return 404, (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ContainerNotFound</Code>'
                         b"<Message>The specified container does not exist.</Message></Error>")
        return 200, (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                     f'ServiceEndpoint="{self.url}/{account}/" ContainerName="{container}"><Blobs /><NextMarker />'
                     "</EnumerationResults>").encode()

    def _token(self, h: BaseHTTPRequestHandler, query: str) -> tuple[int, Any]:
        if h.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return 401, {"error": "invalid identity header"}
        resource = (parse_qs(query).get("resource") or [""])[0]
        return 200, {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600), "resource": resource,
                     "token_type": "Bearer"}

    def _route(self, method: str, low: str, path: str, body: Any) -> tuple[int, Any]:
        if low == "/subscriptions" and method == "GET":
            return 200, {"value": [{"id": f"/subscriptions/{s}", "subscriptionId": s, "displayName": s,
                                    "state": "Enabled"} for s in self.subscriptions]}
        if low.endswith("/providers/microsoft.storage/checknameavailability") and method == "POST":
            name = (body or {}).get("name", "")
            if name in self.taken:
                return 200, {"nameAvailable": False, "reason": "AlreadyExists",
                             "message": f"The storage account named {name} is already taken."}
            return 200, {"nameAvailable": name not in self.accounts, "reason": None if name not in self.accounts
                         else "AlreadyExists"}
        role = _ROLE.match(low)
        if role:
            return self._role(method, path, role.group(1), role.group(2), body)
        account = _ACCOUNT.match(low)
        if account:
            return self._account(method, path, account.group(1), account.group(2), _original(path, account, 3),
                                 account.group(4) or "", body)
        group = _GROUP.match(low)
        if group:
            return self._group(method, group.group(1), _original(path, group, 2), bool(group.group(3)), body)
        return 404, _error("NoRoute", f"the fake ARM server has no route for {method} {path}")

    # ---- resource groups ----------------------------------------------------------------------------------------
    def _group(self, method: str, sub: str, name: str, resources: bool, body: Any) -> tuple[int, Any]:
        key = name.lower()
        if resources:
            if key not in self.groups:
                return 404, _error("ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            return 200, {"value": [{"id": a["id"], "name": n, "type": "Microsoft.Storage/storageAccounts",
                                    "location": a["location"]}
                                   for n, a in self.accounts.items() if a["group"].lower() == key]}
        if method == "GET":
            if key not in self.groups:
                return 404, _error("ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            return 200, self._group_body(sub, key)
        if method == "PUT":
            created = key not in self.groups
            self.groups[key] = {"name": name, "location": (body or {}).get("location"), "tags": (body or {}).get(
                "tags")}
            return (201 if created else 200), self._group_body(sub, key)
        if method == "DELETE":
            if key not in self.groups:
                return 404, _error("ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            for n in [n for n, a in self.accounts.items() if a["group"].lower() == key]:
                self._drop_account(n)
            del self.groups[key]
            return 200, None
        return 405, _error("MethodNotAllowed", method)

    def _group_body(self, sub: str, key: str) -> dict[str, Any]:
        g = self.groups[key]
        return {"id": f"/subscriptions/{sub}/resourceGroups/{g['name']}", "name": g["name"], "location": g["location"],
                "tags": g.get("tags"), "properties": {"provisioningState": "Succeeded"}}

    # ---- storage accounts and containers ------------------------------------------------------------------------
    def _account_body(self, sub: str, group: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        props = dict(body.get("properties") or {})
        blob = f"{self.url}/{name}/"
        if self.azurite is not None and name == self.azurite.account.name:
            blob = self.azurite.account_url() + "/"
        props.update(provisioningState="Succeeded", primaryEndpoints={"blob": blob})
        return {"id": f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{name}",
                "name": name, "type": "Microsoft.Storage/storageAccounts", "location": body.get("location"),
                "kind": body.get("kind"), "sku": body.get("sku"), "tags": body.get("tags"), "properties": props,
                "group": group}

    def _keys(self, name: str) -> dict[str, str]:
        if name not in self.keys:
            if self.azurite is not None and name == self.azurite.account.name:
                self.keys[name] = {"key1": self.azurite.account.key1, "key2": self.azurite.account.key2}
            else:
                self.keys[name] = {"key1": _key(), "key2": _key()}
        return self.keys[name]

    def _drop_account(self, name: str) -> None:
        for key in [k for k in self.containers if k[0] == name]:
            self._azurite_container(name, key[1], create=False)
            del self.containers[key]
        self.accounts.pop(name, None)

    def _account(self, method: str, path: str, sub: str, group: str, name: str, rest: str,
                 body: Any) -> tuple[int, Any]:
        account = self.accounts.get(name)
        if account is not None and account["group"].lower() != group:
            account = None
        if rest == "":
            if method == "GET":
                if account is None:
                    return 404, _error("ResourceNotFound", f"The Resource 'Microsoft.Storage/storageAccounts/{name}' "
                                       "under resource group was not found.")
                return 200, _public(account)
            if method == "PUT":
                if group not in self.groups:
                    return 404, _error("ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
                self.accounts[name] = self._account_body(sub, self.groups[group]["name"], name, body or {})
                return 200, _public(self.accounts[name])
            if method == "PATCH":
                if account is None:
                    return 404, _error("ResourceNotFound", name)
                account["properties"].update((body or {}).get("properties") or {})
                if (body or {}).get("tags") is not None:
                    account["tags"] = body["tags"]
                return 200, _public(account)
            if method == "DELETE":
                if account is not None:
                    self._drop_account(name)
                return 200, None
        if account is None:
            return 404, _error("ResourceNotFound", f"storage account {name} not found")
        low = rest.lower()
        if low == "/listkeys" and method == "POST":
            return 200, {"keys": [{"keyName": k, "value": v, "permissions": "FULL"}
                                  for k, v in self._keys(name).items()]}
        if low == "/regeneratekey" and method == "POST":
            which = (body or {}).get("keyName")
            if which not in ("key1", "key2"):
                return 400, _error("InvalidKeyName", str(which))
            self._keys(name)[which] = _key()
            return 200, {"keys": [{"keyName": k, "value": v, "permissions": "FULL"}
                                  for k, v in self._keys(name).items()]}
        if low == "/blobservices/default/containers" and method == "GET":
            return 200, {"value": [self._container_body(account, c) for (a, c) in self.containers if a == name]}
        match = re.match(r"^/blobservices/default/containers/([^/]+)$", low)
        if match:
            container = rest.split("/")[-1]
            key = (name, container)
            if method == "GET":
                if key not in self.containers:
                    return 404, _error("ContainerNotFound", f"The specified container {container} does not exist.")
                return 200, self._container_body(account, container)
            if method in ("PUT", "PATCH"):
                created = key not in self.containers
                if method == "PATCH" and created:
                    return 404, _error("ContainerNotFound", container)
                self.containers.setdefault(key, {}).update((body or {}).get("properties") or {})
                if created:
                    self._azurite_container(name, container, create=True)
                return (201 if created and method == "PUT" else 200), self._container_body(account, container)
            if method == "DELETE":
                if key in self.containers:
                    del self.containers[key]
                    self._azurite_container(name, container, create=False)
                    return 200, None
                return 204, None
        return 404, _error("NoRoute", f"the fake ARM server has no route for {method} {path}")

    def _container_body(self, account: dict[str, Any], container: str) -> dict[str, Any]:
        props = dict(self.containers[(account["name"], container)])
        props.setdefault("publicAccess", "None")
        return {"id": f"{account['id']}/blobServices/default/containers/{container}", "name": container,
                "type": "Microsoft.Storage/storageAccounts/blobServices/containers", "properties": props}

    def _azurite_container(self, account: str, container: str, create: bool) -> None:
        if self.azurite is None or account != self.azurite.account.name:
            return
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient(self.azurite.account_url(), credential={
            "account_name": account, "account_key": self.azurite.account.key1},
            connection_verify=self.azurite.ca_file, retry_total=0)
        try:
            if create:
                client.create_container(container)
            else:
                client.delete_container(container)
        except (ResourceExistsError, ResourceNotFoundError):
            pass

    # ---- role assignments -----------------------------------------------------------------------------------
    def _role(self, method: str, path: str, scope: str, name: str, body: Any) -> tuple[int, Any]:
        key = f"{scope}|{name}"
        if method == "GET":
            if key not in self.roles:
                return 404, _error("RoleAssignmentNotFound", "The role assignment does not exist.")
            return 200, self.roles[key]
        if method == "PUT":
            props = (body or {}).get("properties") or {}
            for other_key, other in self.roles.items():
                same = other["properties"]
                if other_key.split("|")[0] == scope and other_key != key and (
                        same["principalId"], same["roleDefinitionId"].lower()) == (
                        props.get("principalId"), str(props.get("roleDefinitionId")).lower()):
                    return 409, _error("RoleAssignmentExists", "The role assignment already exists.")
            created = key not in self.roles
            self.roles[key] = {"id": path, "name": name, "type": "Microsoft.Authorization/roleAssignments",
                               "properties": dict(props, scope=scope)}
            return (201 if created else 200), self.roles[key]
        if method == "DELETE":
            if key not in self.roles:
                return 204, None
            return 200, self.roles.pop(key)
        return 405, _error("MethodNotAllowed", method)


def _original(path: str, match: re.Match[str], group: int) -> str:
    """The matched group in its original case (the regexes run on the lower-cased path)."""
    return path[match.start(group):match.end(group)]


def _public(account: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k != "group"}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
