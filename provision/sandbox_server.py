"""The process behind ``provision sandbox up``: a moto server (S3 + IAM + STS) on 127.0.0.1 wrapped in a small
WSGI middleware that keeps a request log and can inject faults, for tests and benchmarks.

Run as ``python -m provision.sandbox_server --ready FILE``; it binds a free port on 127.0.0.1, writes the port to
FILE, and serves until SIGTERM. Control endpoints (loopback only, unauthenticated, never forwarded to moto):

- ``GET /_sandbox/requests``: the log, a JSON list of
  ``{method, path, query, service, action, status, mutating}``.
- ``POST /_sandbox/requests/reset``: empty the log.
- ``POST /_sandbox/faults`` with ``{"fail_mutating_at": k, "count": n}``: answer the k-th mutating request from
  now (1-based) and the n-1 mutating requests after it (default n=1; the SDKs retry a 500, so pass n greater
  than their attempts to make an operation fail for good) with HTTP 500 ``InternalError`` instead of passing
  them to moto; ``{}`` clears the fault.
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

    def __init__(self, app: Any) -> None:
        self.app = app
        self.entries: list[dict[str, Any]] = []
        self.fail_mutating_at: int | None = None
        self.fail_count = 1
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
        service = match.group(1) if match else ("moto-api" if path.startswith("/moto-api") else "s3")
        mutating = is_mutating(method, service, action)
        entry = {"method": method, "path": path, "query": environ.get("QUERY_STRING", ""), "service": service,
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
        if inject:
            entry["status"] = 500
            start_response("500 Internal Server Error", [("Content-Type", "application/xml")])
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
                payload = {"ok": True}
            else:
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [b'{"error": "unknown sandbox control path"}']
            data = json.dumps(payload).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def main(argv: list[str] | None = None) -> None:
    """Serve moto on 127.0.0.1 until SIGTERM; write the bound port to ``--ready``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True, help="file to write the bound port to")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = RequestLog(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    ready = Path(args.ready)
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(ready)
    server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
