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
"""

from __future__ import annotations

import argparse
import io
import json
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_SIG = re.compile(r"((?:^|&)(?:sig|X-Amz-Signature|Signature)=)[^&]*")
"""SAS and presigned-URL signatures, kept out of the request log."""
_READ_ACTIONS = re.compile(r"^(Get|List|Head|Describe|Simulate)")


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
        entry = {"method": method, "path": path, "query": _SIG.sub(r"\1REDACTED", environ.get("QUERY_STRING", "")),
                 "service": service,
                 "action": action, "mutating": mutating}
        with self.lock:
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
    """

    def __init__(self, upstream: str, cafile: str | None = None) -> None:
        from urllib.parse import urlsplit

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
    gcs = make_server("127.0.0.1", 0, RequestLog(Forward(gcs_upstream), service="gcs"), threaded=True)
    servers.append(gcs)

    azurite = None
    azure = None
    if args.azurite:
        azurite, azurite_port = _start_azurite(args.azurite, args.cert, args.key, args.data)
        app = RequestLog(Forward(f"https://127.0.0.1:{azurite_port}", cafile=args.cert), service="azure")
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
    ready = Path(args.ready)
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"s3": s3.server_address[1], "gcs": gcs.server_address[1],
                               "azure": azure.server_address[1] if azure else None}))
    tmp.replace(ready)
    s3.serve_forever()
    if azurite is not None:
        azurite.wait(timeout=10)
    sys.exit(0)


if __name__ == "__main__":
    main()
