"""The embedded local cloud (shared/DESIGN.md "The embedded default").

``provision sandbox up`` starts an S3 + IAM + STS endpoint that enforces IAM policies (moto server with auth
switched on after an admin key is made) on 127.0.0.1 with a free port, and records its endpoint and admin
credentials in ``<state dir>/sandbox/endpoints.json`` (0600). ``--env sandbox`` (``envs/sandbox.yaml``) points
commands at it. ``.provision/sandbox.json`` stays what it is for every env: the state of ``--env sandbox``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from provision.errors import BadInput, MissingExtra
from provision.files import atomic_write
from provision.state import state_dir

SANDBOX_REGION = "us-east-1"
ADMIN_USER = "sandbox-admin"
START_TIMEOUT = 60.0
"""Seconds to wait for the emulator to bind its port."""


class S3Endpoint(BaseModel):
    """The sandbox's S3 + IAM + STS endpoint and its admin access key."""

    endpoint_url: str
    region: str
    access_key: str
    secret_key: str


class SandboxInfo(BaseModel):
    """What ``sandbox up`` records: the server pid, its endpoints, when it started (UTC)."""

    pid: int
    s3: S3Endpoint
    started_at: datetime


def sandbox_dir() -> Path:
    """``$PROVISION_SANDBOX_DIR`` or ``<state dir>/sandbox``: endpoints.json, the server log."""
    return Path(os.environ.get("PROVISION_SANDBOX_DIR") or state_dir() / "sandbox").absolute()


def _info_path() -> Path:
    return sandbox_dir() / "endpoints.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_info() -> SandboxInfo | None:
    """The running sandbox's info, or None when none is recorded or its process is gone."""
    path = _info_path()
    if not path.exists():
        return None
    info = SandboxInfo.model_validate_json(path.read_text())
    return info if _alive(info.pid) else None


def require_info() -> SandboxInfo:
    """The running sandbox's info.

    Raises:
        BadInput: no sandbox is running.
    """
    info = read_info()
    if info is None:
        raise BadInput("the sandbox is not running", "start it with: provision sandbox up")
    return info


def up() -> tuple[SandboxInfo, bool]:
    """Start the sandbox unless it is already running.

    Returns:
        (info, started): ``started`` is False when a running sandbox was found and reused.

    Raises:
        MissingExtra: moto is not installed (``pip install 'provision[sandbox]'``).
        ProvisionError: the emulator did not start within `START_TIMEOUT` seconds (names its log file).
    """
    existing = read_info()
    if existing is not None:
        return existing, False
    try:
        import moto  # noqa: F401
    except ImportError:
        raise MissingExtra("moto", "sandbox") from None
    directory = sandbox_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ready = directory / "s3.port"
    ready.unlink(missing_ok=True)
    log = open(directory / "s3.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "provision.sandbox_server", "--ready", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=directory,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise BadInput(f"the S3 emulator did not start; see {directory / 's3.log'}", "fix the cause and retry")
        time.sleep(0.05)
    endpoint = f"http://127.0.0.1:{int(ready.read_text())}"
    s3 = _make_admin(endpoint)
    info = SandboxInfo(pid=proc.pid, s3=s3, started_at=datetime.now(timezone.utc))
    atomic_write(_info_path(), info.model_dump_json(indent=2).encode())
    return info, True


def _make_admin(endpoint: str) -> S3Endpoint:
    """Create the admin user and key while moto's auth is off, then switch enforcement on."""
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=SANDBOX_REGION,
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(
        UserName=ADMIN_USER,
        PolicyName="allow-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=10).read()
    return S3Endpoint(
        endpoint_url=endpoint, region=SANDBOX_REGION, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"]
    )


def down() -> bool:
    """Stop the sandbox. Returns True when one was running. Its data is gone with it (kept in memory)."""
    path = _info_path()
    if not path.exists():
        return False
    info = SandboxInfo.model_validate_json(path.read_text())
    running = _alive(info.pid)
    if running:
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(info.pid) and time.monotonic() < deadline:
            _reap(info.pid)
            time.sleep(0.05)
        if _alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)
            _reap(info.pid)
    path.unlink(missing_ok=True)
    return running


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def request_log(endpoint_url: str) -> list[dict[str, Any]]:
    """The sandbox server's request log (see `provision.sandbox_server`)."""
    with urllib.request.urlopen(f"{endpoint_url}/_sandbox/requests", timeout=10) as resp:
        return json.loads(resp.read())


def control(endpoint_url: str, path: str, payload: dict[str, Any] | None = None) -> None:
    """POST to a sandbox control path (``requests/reset``, ``faults``)."""
    data = json.dumps(payload or {}).encode()
    req = urllib.request.Request(f"{endpoint_url}/_sandbox/{path}", data=data, method="POST")
    urllib.request.urlopen(req, timeout=10).read()
