"""The process behind ``provision sandbox up``: the local clouds on 127.0.0.1, each behind a small WSGI middleware
that keeps a request log and can inject faults, for tests and benchmarks.

- S3 + IAM + STS: a moto server (in this process).
- Google Cloud Storage: ``gcp-storage-emulator`` (in this process, in memory) behind a forwarding proxy.
- Azure Blob: Azurite (a node child process, HTTPS with the sandbox's certificate, the accounts of
  ``AZURITE_ACCOUNTS``) behind a forwarding HTTPS proxy; only when ``--azurite`` names its binary.

Run as ``python -m provision.sandbox_server --ready FILE [--azurite BIN --cert PEM --key PEM --data DIR]``; it binds
free ports on 127.0.0.1, writes ``{"s3": port, "gcs": port, "azure": port|null}`` to FILE, and serves until SIGTERM
(which also stops Azurite). Control endpoints, on each service's port (loopback only, unauthenticated, never
forwarded):

- ``GET /_sandbox/requests``: the log, a JSON list of
  ``{method, path, query, service, action, status, mutating}``.
- ``POST /_sandbox/requests/reset``: empty the log.
- ``POST /_sandbox/faults`` with ``{"fail_mutating_at": k, "count": n, "status": s}``: answer the k-th mutating
  request from now (1-based) and the n-1 mutating requests after it (default n=1; the SDKs retry a 500, so pass n
  greater than their attempts to make an operation fail for good) with HTTP ``s`` (default 500) ``InternalError``
  instead of passing them on; with ``"after": true`` the request is passed on and carried out first, and only its
  answer is replaced (a response lost on the way back); ``{}`` clears the fault.
- ``POST /_sandbox/limits`` with ``{"max_keys": n}``: every object listing through this service answers at most
  ``n`` entries per page from now on, whatever page size the client asked for (S3 ``max-keys`` of ListObjects,
  ListObjectsV2 and ListObjectVersions; Azure ``maxresults`` of List Blobs, a SharedKey-signed request re-signed
  with the same account key; GCS ``maxResults`` of objects.list, paged by the proxy since the emulator does not
  page), so a test sees a second page with a few objects instead of a thousand; ``{}`` clears it.

S3 follows AWS where moto does not (`aws_s3_rules`): HeadBucket is authorised as ``s3:ListBucket``; CopyObject and
UploadPartCopy also need ``s3:GetObject`` on the source; a bucket whose object ownership is ``BucketOwnerEnforced``
refuses ACLs (400 ``AccessControlListNotSupported``).

Secrets at rest: SAS and presigned-URL signatures are masked in the request log and in everything this process
writes to its stdout and stderr (werkzeug's access lines, Azurite's output).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_SIG = re.compile(r"((?:^|[?&;,\s])(?:sig|X-Amz-Signature|X-Goog-Signature|Signature)=)[^&\s\"']*", re.IGNORECASE)
"""SAS, presigned-URL and SigV4 header signatures, kept out of the request log and the process's output."""
_READ_ACTIONS = re.compile(r"^(Get|List|Head|Describe|Simulate)")
MAX_KEYS = "provision.sandbox.max_keys"
"""WSGI environ key: the listing page cap of ``/_sandbox/limits`` for the service app behind `RequestLog`."""


def redact(text: str) -> str:
    """``text`` with every SAS ``sig=``, ``X-Amz-Signature=``, ``X-Goog-Signature=`` and ``Signature=`` value
    replaced by ``REDACTED``."""
    return _SIG.sub(r"\1REDACTED", text)


class RedactingStream:
    """A text stream that masks signatures (`redact`) in everything written to ``stream`` (this process's stdout
    and stderr, which ``sandbox up`` sends to ``sandbox.log``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def is_mutating(method: str, service: str, action: str | None) -> bool:
    """Whether a request changes anything: S3 requests other than GET/HEAD; IAM/STS actions other than
    Get*/List*/Simulate* (``GetCallerIdentity`` included); moto's own control API never."""
    if service in ("iam", "sts"):
        return bool(action) and not _READ_ACTIONS.match(action or "")
    if service == "moto-api":
        return False
    return method not in ("GET", "HEAD", "OPTIONS")


class RequestLog:
    """WSGI middleware: logs every request passed to ``app`` and injects the configured fault."""

    def __init__(self, app: Any, service: str | None = None) -> None:
        self.app = app
        self.service = service
        self.entries: list[dict[str, Any]] = []
        self.fail_mutating_at: int | None = None
        self.fail_count = 1
        self.fail_status = 500
        self.fail_after = False
        self.max_keys: int | None = None
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._control(environ, start_response, path)
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        action = (query.get("Action") or [None])[0]
        if "application/x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            action = (parse_qs(body.decode(errors="replace")).get("Action") or [action])[0]
        match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = self.service or (match.group(1) if match else ("moto-api" if path.startswith("/moto-api")
                                                                   else "s3"))
        mutating = is_mutating(method, service, action)
        entry = {"method": method, "path": path, "query": redact(environ.get("QUERY_STRING", "")),
                 "service": service, "action": action, "mutating": mutating}
        with self.lock:
            if self.max_keys is not None:
                environ[MAX_KEYS] = self.max_keys
            self.entries.append(entry)
            inject = False
            if mutating and self.fail_mutating_at is not None:
                self.fail_mutating_at -= 1
                if self.fail_mutating_at <= 0:
                    inject = True
                    self.fail_count -= 1
                    if self.fail_count <= 0:
                        self.fail_mutating_at = None
        if inject and self.fail_after:  # the request is carried out, then its answer is "lost"
            for _ in self.app(environ, lambda *args, **kwargs: None):
                pass
        if inject:
            entry["status"] = self.fail_status
            start_response(f"{self.fail_status} Injected", [("Content-Type", "application/xml")])
            return [b"<Error><Code>InternalError</Code><Message>injected by the sandbox</Message></Error>"]

        def _start(status: str, headers: Any, exc_info: Any = None) -> Any:
            entry["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        return self.app(environ, _start)

    def _control(self, environ: dict[str, Any], start_response: Any, path: str) -> Any:
        method = environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        with self.lock:
            if path == "/_sandbox/requests" and method == "GET":
                payload: Any = self.entries
            elif path == "/_sandbox/requests/reset" and method == "POST":
                self.entries = []
                payload = {"ok": True}
            elif path == "/_sandbox/faults" and method == "POST":
                fault = json.loads(body or b"{}") or {}
                self.fail_mutating_at = fault.get("fail_mutating_at")
                self.fail_count = int(fault.get("count", 1))
                self.fail_status = int(fault.get("status", 500))
                self.fail_after = bool(fault.get("after", False))
                payload = {"ok": True}
            elif path == "/_sandbox/limits" and method == "POST":
                limits = json.loads(body or b"{}") or {}
                self.max_keys = int(limits["max_keys"]) if limits.get("max_keys") else None
                payload = {"ok": True}
            else:
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [b'{"error": "unknown sandbox control path"}']
            data = json.dumps(payload).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length"}


class Forward:
    """WSGI app that forwards each request unchanged (method, path, query, headers including ``Host``, body) to
    ``upstream`` and returns its answer, so the request log sees emulators that are not WSGI apps.

    Args:
        upstream: ``http://127.0.0.1:PORT`` or ``https://...``.
        cafile: the certificate to trust for an https upstream.
        rewrite: ``rewrite(max_keys, method, path, headers) -> path``, called when the request carries a listing
            page cap (`MAX_KEYS`); it may change the path's query and the headers (in place).
    """

    def __init__(self, upstream: str, cafile: str | None = None,
                 rewrite: Callable[[int, str, str, dict[str, str]], str] | None = None) -> None:
        from urllib.parse import urlsplit

        self.rewrite = rewrite
        parts = urlsplit(upstream)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or (443 if self.https else 80)
        self.context = None
        if self.https:
            import ssl

            self.context = ssl.create_default_context(cafile=cafile)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        import http.client

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else (
            environ["wsgi.input"].read() if environ.get("wsgi.input_terminated") else b"")
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _HOP_BY_HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers["Content-Length"] = str(len(body))
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
        if self.rewrite is not None and environ.get(MAX_KEYS):
            path = self.rewrite(environ[MAX_KEYS], environ["REQUEST_METHOD"], path, headers)
        if self.https:
            conn: Any = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=300)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        try:
            conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = resp.getheader("Content-Length") if environ["REQUEST_METHOD"] == "HEAD" else None
        out.append(("Content-Length", length or str(len(data))))  # a HEAD answer keeps the object's size
        start_response(f"{resp.status} {resp.reason}", out)
        return [data]


def _set_query(path: str, name: str, value: str | None) -> str:
    """``path`` (with its query) with the query parameter ``name`` set to ``value`` (removed when None); the other
    parameters keep their exact encoding."""
    base, _, query = path.partition("?")
    parts = [p for p in query.split("&") if p and unquote(p.split("=", 1)[0]).lower() != name.lower()]
    if value is not None:
        parts.append(f"{name}={value}")
    return base + ("?" + "&".join(parts) if parts else "")


def _capped(query: str, name: str, max_keys: int) -> str:
    """The page size to ask for: the client's ``name`` parameter (when any) capped at ``max_keys``."""
    asked = dict(parse_qsl(query)).get(name)
    return str(min(int(asked), max_keys) if asked and asked.isdigit() else max_keys)


class AzureListCap:
    """`Forward` rewrite for Azurite: caps ``maxresults`` of List Blobs (``restype=container&comp=list``).

    A SharedKey-signed request signs every query parameter, so it is re-signed with the account key that signed it
    (the keys of ``AZURITE_ACCOUNTS``); a request whose signature no key reproduces is passed on unchanged, for
    Azurite to refuse. Rule: https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
    """

    _SIGNED = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
               "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")

    def __init__(self, accounts: str) -> None:
        self.keys: dict[str, list[str]] = {}
        for entry in filter(None, accounts.split(";")):
            name, *keys = entry.split(":")
            self.keys[name] = keys

    def _signature(self, key: str, account: str, method: str, path: str, headers: dict[str, str]) -> str:
        import base64
        import hashlib
        import hmac

        lower = {k.lower(): v for k, v in headers.items()}
        fixed = [lower.get(h, "") for h in self._SIGNED]
        fixed[2] = "" if fixed[2] == "0" else fixed[2]
        canonical_headers = "".join(f"{k}:{v.strip()}\n" for k, v in sorted(lower.items()) if k.startswith("x-ms-"))
        parts = urlsplit(path)
        resource = f"/{account}{parts.path}" + "".join(
            f"\n{k.lower()}:{v}" for k, v in sorted(parse_qsl(parts.query, keep_blank_values=True)))
        text = "\n".join([method, *fixed]) + "\n" + canonical_headers + resource
        digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def __call__(self, max_keys: int, method: str, path: str, headers: dict[str, str]) -> str:
        query = dict(parse_qsl(urlsplit(path).query))
        if method != "GET" or query.get("restype") != "container" or query.get("comp") != "list":
            return path
        capped = _set_query(path, "maxresults", _capped(urlsplit(path).query, "maxresults", max_keys))
        auth = next((k for k in headers if k.lower() == "authorization"), None)
        if auth is None or not headers[auth].startswith("SharedKey "):
            return capped  # a SAS signs no listing parameter
        account, _, signature = headers[auth][len("SharedKey "):].partition(":")
        for key in self.keys.get(account, []):
            if self._signature(key, account, method, path, headers) == signature:
                headers[auth] = f"SharedKey {account}:{self._signature(key, account, method, capped, headers)}"
                return capped
        return path


class GcsPages:
    """WSGI app in front of the GCS emulator's `Forward`: pages objects.list (``GET /storage/v1/b/B/o``), which the
    emulator answers in one page, when a page cap (`MAX_KEYS`), ``maxResults`` or ``pageToken`` is given.

    Items and prefixes are merged in name order (as Cloud Storage lists them); ``nextPageToken`` is the last name
    answered (base64url). Rule: https://cloud.google.com/storage/docs/json_api/v1/objects/list
    """

    _LIST = re.compile(r"^/storage/v1/b/[^/]+/o/?$")

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        import base64

        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if (environ["REQUEST_METHOD"] != "GET" or not self._LIST.match(environ.get("PATH_INFO", ""))
                or not (environ.get(MAX_KEYS) or "maxResults" in query or "pageToken" in query)):
            return self.app(environ, start_response)
        size = int(_capped(environ.get("QUERY_STRING", ""), "maxResults", environ.get(MAX_KEYS) or 1000))
        after = base64.urlsafe_b64decode(query["pageToken"]).decode() if query.get("pageToken") else None
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"]
        environ["RAW_URI"] = environ["REQUEST_URI"] = _set_query(_set_query(path, "pageToken", None),
                                                                 "maxResults", None)
        answer: list[Any] = []
        body = b"".join(self.app(environ, lambda status, headers, exc_info=None: answer.extend([status, headers])))
        status, headers = answer
        if not status.startswith("200"):
            start_response(status, headers)
            return [body]
        doc = json.loads(body)
        entries = sorted([(i["name"], i) for i in doc.pop("items", [])] + [(p, None) for p in doc.pop("prefixes", [])],
                         key=lambda e: e[0])
        entries = [e for e in entries if after is None or e[0] > after]
        page, rest = entries[:size], entries[size:]
        doc["items"] = [item for _, item in page if item is not None]
        doc["prefixes"] = [name for name, item in page if item is None]
        if rest:
            doc["nextPageToken"] = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
        data = json.dumps(doc).encode()
        start_response(status, [(k, v) for k, v in headers if k.lower() != "content-length"]
                       + [("Content-Length", str(len(data)))])
        return [data]


_ACL_OK = {"object": {"", "bucket-owner-full-control"}, "bucket": {"", "private"}}
_ACL_ACTIONS = {"PutObject": "object", "PutObjectAcl": "object", "PutBucketAcl": "bucket"}


def _acl_refused(response: Any, action: str, bucket_name: str | None) -> bool:
    """Whether an S3 request sets an ACL that a ``BucketOwnerEnforced`` bucket refuses: a canned ACL other than
    ``bucket-owner-full-control`` (objects) or ``private`` (buckets), a grant header other than full control, or
    an ACL body granting anything but FULL_CONTROL to a canonical user.
    Rule: https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html"""
    kind = _ACL_ACTIONS.get(action)
    if kind is None or bucket_name is None:
        return False
    try:
        bucket = response.backend.get_bucket(bucket_name)
    except Exception:  # noqa: BLE001 - a missing bucket is moto's own answer to give
        return False
    if bucket.ownership_rule != "BucketOwnerEnforced":
        return False
    headers = {k.lower(): v for k, v in response.headers.items()}
    if headers.get("x-amz-acl", "") not in _ACL_OK[kind]:
        return True
    if any(h.startswith("x-amz-grant-") and h != "x-amz-grant-full-control" for h in headers):
        return True
    body = response.body if isinstance(response.body, bytes) else str(response.body or "").encode()
    if action != "PutObject" and b"AccessControlPolicy" in body:
        import xmltodict

        grants = xmltodict.parse(body)["AccessControlPolicy"].get("AccessControlList") or {}
        grants = grants.get("Grant") or []
        for grant in grants if isinstance(grants, list) else [grants]:
            grantee = grant.get("Grantee") or {}
            if grant.get("Permission") != "FULL_CONTROL" or grantee.get("@xsi:type") != "CanonicalUser":
                return True
    return False


def aws_s3_rules() -> None:
    """Make this process's moto S3 authorise as AWS does (idempotent; moto 5.2):

    - HeadBucket is authorised as ``s3:ListBucket`` (moto asks for a non-existent ``s3:HeadBucket``).
      Rule: https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html
    - CopyObject and UploadPartCopy (a PUT with ``x-amz-copy-source``) also need ``s3:GetObject`` (or
      ``s3:GetObjectVersion``) on the source object. Rule: https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
    - PutObject, CopyObject, CreateMultipartUpload, PutObjectAcl and PutBucketAcl setting an ACL on a
      ``BucketOwnerEnforced`` bucket answer 400 ``AccessControlListNotSupported`` (`_acl_refused`).
    - A listing page cap (`MAX_KEYS`, from ``/_sandbox/limits``) caps ``max-keys`` of ListObjects, ListObjectsV2
      and ListObjectVersions (applied after the signature was checked).
    """
    from moto.s3 import responses
    from moto.s3.exceptions import S3ClientError

    if getattr(responses.S3Response, "_provision_rules", False):
        return

    class AccessControlListNotSupported(S3ClientError):
        code = "AccessControlListNotSupported"

        def __init__(self) -> None:
            super().__init__("AccessControlListNotSupported", "The bucket does not allow ACLs")

    authorize = responses.S3Response._authenticate_and_authorize_s3_action

    def authorize_as_aws(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        action = self.data.get("Action")
        if action == "HeadBucket":
            self.data["Action"] = "ListBucket"
            try:
                return authorize(self, bucket_name=bucket_name, key_name=key_name)
            finally:
                self.data["Action"] = action
        authorize(self, bucket_name=bucket_name, key_name=key_name)
        source = self.headers.get("x-amz-copy-source")
        if self.method == "PUT" and key_name and source:
            source = source.decode() if isinstance(source, bytes) else source
            parts = urlsplit(source)
            src_bucket, _, src_key = unquote(parts.path).lstrip("/").partition("/")
            self.data["Action"] = "GetObjectVersion" if "versionId" in parse_qs(parts.query) else "GetObject"
            try:
                authorize(self, bucket_name=src_bucket, key_name=src_key)
            finally:
                self.data["Action"] = action
        if _acl_refused(self, action, bucket_name):
            raise AccessControlListNotSupported()

    def capped(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def listing(self: Any) -> Any:
            max_keys = self.request.environ.get(MAX_KEYS)
            if max_keys:
                asked = self.querystring.get("max-keys", [""])[0]
                self.querystring["max-keys"] = [str(min(int(asked), max_keys) if asked.isdigit() else max_keys)]
            return method(self)

        return listing

    responses.S3Response._authenticate_and_authorize_s3_action = authorize_as_aws
    for name in ("list_objects", "list_objects_v2", "list_object_versions"):
        setattr(responses.S3Response, name, capped(getattr(responses.S3Response, name)))
    responses.S3Response._provision_rules = True


def _start_azurite(binary: str, cert: str, key: str, data: str) -> tuple[Any, int]:
    """Start Azurite's Blob service on 127.0.0.1 over HTTPS with a free port; returns (process, port)."""
    import subprocess

    proc = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", data, "--silent",
         "--skipApiVersionCheck", "--disableTelemetry", "--cert", cert, "--key", key],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        match = re.search(r"listens on https?://[^:]+:(\d+)", line)
        if match:
            port = int(match.group(1))
            threading.Thread(target=lambda: [sys.stdout.write(x) for x in proc.stdout or []], daemon=True).start()
            return proc, port
    raise SystemExit(f"azurite exited with code {proc.wait()} before listening")


def main(argv: list[str] | None = None) -> None:
    """Serve the local clouds on 127.0.0.1 until SIGTERM; write the bound ports to ``--ready``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True, help="file to write the bound ports to (JSON)")
    parser.add_argument("--azurite", help="the azurite-blob binary; Azure is left out without it")
    parser.add_argument("--cert", help="PEM certificate for the HTTPS services")
    parser.add_argument("--key", help="PEM private key for the HTTPS services")
    parser.add_argument("--data", help="directory for Azurite's files")
    args = parser.parse_args(argv)
    os.umask(0o077)  # ports file, Azurite's database and extents: private, whatever umask we were started with
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    aws_s3_rules()

    from gcp_storage_emulator.server import create_server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    servers: list[Any] = []
    s3 = make_server("127.0.0.1", 0, RequestLog(DomainDispatcherApplication(create_backend_app)), threaded=True,
                     request_handler=MotoRequestHandler)
    servers.append(s3)

    gcs_emulator = create_server("127.0.0.1", 0, in_memory=True)
    gcs_emulator.start()
    gcs_upstream = f"http://127.0.0.1:{gcs_emulator._api._httpd.server_address[1]}"
    gcs = make_server("127.0.0.1", 0, RequestLog(GcsPages(Forward(gcs_upstream)), service="gcs"), threaded=True)
    servers.append(gcs)

    azurite = None
    azure = None
    if args.azurite:
        azurite, azurite_port = _start_azurite(args.azurite, args.cert, args.key, args.data)
        cap = AzureListCap(os.environ.get("AZURITE_ACCOUNTS", ""))
        app = RequestLog(Forward(f"https://127.0.0.1:{azurite_port}", cafile=args.cert, rewrite=cap), service="azure")
        azure = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(args.cert, args.key))
        servers.append(azure)

    def stop(*_: Any) -> None:
        def _shutdown() -> None:
            for server in servers[1:]:
                server.shutdown()
            if azurite is not None:
                azurite.terminate()
            gcs_emulator.stop()
            servers[0].shutdown()

        threading.Thread(target=_shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    s3_thread = threading.Thread(target=s3.serve_forever, daemon=True)
    s3_thread.start()

    # MinIO: the admin API over the enforcing moto, so it needs the admin key (made here, then enforcement on)
    from provision.sandbox import _make_admin
    from provision.sandbox_minio import minio_app, request_handler

    admin = _make_admin(f"http://127.0.0.1:{s3.server_address[1]}")
    minio = make_server("127.0.0.1", 0, RequestLog(minio_app(admin.endpoint_url, admin.access_key, admin.secret_key),
                                                   service="minio"), threaded=True, request_handler=request_handler())
    servers.insert(1, minio)
    threading.Thread(target=minio.serve_forever, daemon=True).start()

    from provision.files import atomic_write

    atomic_write(Path(args.ready), json.dumps({  # holds the admin secret: 0600
        "s3": s3.server_address[1], "gcs": gcs.server_address[1], "minio": minio.server_address[1],
        "azure": azure.server_address[1] if azure else None, "admin": admin.model_dump()}).encode())
    s3_thread.join()
    if azurite is not None:
        azurite.wait(timeout=10)
    sys.exit(0)


if __name__ == "__main__":
    main()
