"""API-call benchmark: HTTP requests made by ``provision s3`` vs ``s3-credentials create`` against one sandbox.

Starts the project's sandbox (``provision sandbox up``: a moto server on 127.0.0.1 with a request log) with
``PROVISION_STATE_DIR`` set to a fresh temp dir, then for each run: resets the log, runs the command, reads the log
and prints one row (tool, run #, exit code, total and mutating requests, the requests themselves). Runs:

- ``provision s3 --env sandbox --prefix <p1> --readonly --no-verify``: the first run (creates ``<p1>-public`` and
  ``<p1>-private``), then 3 re-runs of the same command;
- ``s3-credentials create <p2>-public <p2>-private --create-bucket --read-only``: the first run, then 3 re-runs
  (a re-run may fail, e.g. with ``LimitExceeded`` once the user has 2 access keys; its exit code is printed).

Ends with the target and the number of access keys each tool's IAM user holds, stops the sandbox
(``provision sandbox down``) and removes the temp dir. It only prints figures; it never fails on a count.

Run from the repo root: ``.venv/bin/python bench/api_calls.py``
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

from provision.sandbox import is_running

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROVISION = str(BIN / "provision")
S3_CREDENTIALS = str(BIN / "s3-credentials")
RERUNS = 3
COMMAND_TIMEOUT = 150
TARGET = "target: provision first run <= 9 + 2 per bucket = 13 requests; re-run 0 mutating"
FIRST_RUN_MAX = 9 + 2 * 2
ADMIN_USER = "sandbox-admin"


def base_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without AWS_* settings (so no host profile or endpoint leaks in), with the AWS
    config files pointed at paths that do not exist and the sandbox state kept in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROVISION_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        PROVISION_STATE_DIR=str(tmp),
        PROVISION_ENVS_DIR=str(REPO / "envs"),
    )
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output; a timeout is reported as exit code -1."""
    try:
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return subprocess.CompletedProcess(cmd, -1, out, f"timed out after {COMMAND_TIMEOUT}s")


class Sandbox:
    """The request log of a running sandbox server (`provision.sandbox.request_log` / `control`)."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def reset(self) -> None:
        """Empty the request log."""
        from provision.sandbox import control

        control(self.endpoint_url, "requests/reset")

    def requests(self) -> list[dict[str, Any]]:
        """The request log since the last reset."""
        from provision.sandbox import request_log

        return request_log(self.endpoint_url)


def describe(entry: dict[str, Any]) -> str:
    """One request as text: ``METHOD /path`` for S3, the action for IAM (``sts:Action`` for STS...); ``*`` marks a
    mutating request and ``[status]`` any non-2xx answer."""
    service = entry.get("service")
    if service == "s3":
        text = f"{entry['method']} {entry['path']}"
    elif service == "iam":
        text = str(entry.get("action"))
    else:
        text = f"{service}:{entry.get('action') or entry['method'] + ' ' + entry['path']}"
    if entry.get("mutating"):
        text += "*"
    status = entry.get("status")
    if status is not None and not 200 <= int(status) < 300:
        text += f" [{status}]"
    return text


def wrap(items: list[str], width: int = 110, indent: str = "    ") -> str:
    """Join ``items`` with commas into lines of at most ``width`` characters, never splitting an item."""
    lines: list[str] = []
    line = ""
    for item in items:
        piece = f"{item}, "
        if line and len(indent) + len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line.rstrip(", "))
    return "\n".join(indent + text for text in lines)


def measure(sandbox: Sandbox, tool: str, label: str, cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, int]:
    """Reset the log, run ``cmd``, print its row (and the last line of its output when it failed).

    Returns:
        (total requests, mutating requests).
    """
    sandbox.reset()
    proc = run(cmd, env, cwd)
    log = sandbox.requests()
    mutating = sum(1 for e in log if e.get("mutating"))
    print(f"{tool:<15} {label:<7} {proc.returncode:>4} {len(log):>6} {mutating:>9}")
    print(wrap([describe(e) for e in log] or ["(no requests)"]))
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        print(f"    ! {lines[-1] if lines else '(no output)'}")
    return len(log), mutating


def access_keys(iam: Any, user: str) -> str:
    """How many access keys ``user`` has, or the error code when it cannot be listed."""
    try:
        return str(len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"]))
    except iam.exceptions.ClientError as exc:
        return f"? ({exc.response['Error'].get('Code')})"


def report_keys(info: dict[str, Any], provision_user: str) -> None:
    """Print the number of access keys held by provision's user and by the user(s) s3-credentials made."""
    s3 = info["s3"]
    iam = boto3.client(
        "iam",
        endpoint_url=s3["endpoint_url"],
        region_name=s3["region"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
    )
    users = [u["UserName"] for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]
    others = [u for u in users if u not in (ADMIN_USER, provision_user)]
    print("access keys per IAM user at the end:")
    print(f"  provision       {provision_user}: {access_keys(iam, provision_user)}")
    if not others:
        print("  s3-credentials  (no user found)")
    for user in others:
        print(f"  s3-credentials  {user}: {access_keys(iam, user)}")


def stop_sandbox(env: dict[str, str], tmp: Path, info: dict[str, Any] | None) -> None:
    """``provision sandbox down``; if the server is still alive afterwards, kill it by its recorded pid."""
    proc = run([PROVISION, "sandbox", "down"], env, tmp)
    if proc.returncode != 0:
        print(f"warning: `provision sandbox down` exited {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)
    if info is not None and is_running(int(info["pid"])):
        print(f"warning: sandbox server pid {info['pid']} survived `sandbox down`; killing it", file=sys.stderr)
        try:
            os.kill(int(info["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def bench(env: dict[str, str], tmp: Path, info: dict[str, Any]) -> None:
    """All the measured runs, the target and the access-key counts."""
    sandbox = Sandbox(info["s3"]["endpoint_url"])
    p1, p2 = f"bench-{secrets.token_hex(4)}", f"bench-{secrets.token_hex(4)}"
    print(f"sandbox: {sandbox.endpoint_url}; provision prefix {p1}, s3-credentials prefix {p2}")
    print("requests: S3 as METHOD /path, IAM as its action; * = mutating, [nnn] = non-2xx status")
    print()
    print(f"{'tool':<15} {'run':<7} {'exit':>4} {'total':>6} {'mutating':>9}")

    # --no-verify: s3-credentials does not probe its key either; `provision verify` costs ~40 requests of its own
    provision_cmd = [PROVISION, "s3", "--env", "sandbox", "--prefix", p1, "--readonly", "--no-verify"]
    counts = [
        measure(sandbox, "provision", "first" if n == 0 else f"rerun{n}", provision_cmd, env, tmp)
        for n in range(1 + RERUNS)
    ]

    s3c_env = dict(
        env,
        AWS_ENDPOINT_URL=sandbox.endpoint_url,
        AWS_ACCESS_KEY_ID=info["s3"]["access_key"],
        AWS_SECRET_ACCESS_KEY=info["s3"]["secret_key"],
        AWS_DEFAULT_REGION="us-east-1",
    )
    s3c_cmd = [S3_CREDENTIALS, "create", f"{p2}-public", f"{p2}-private", "--create-bucket", "--read-only"]
    for n in range(1 + RERUNS):
        measure(sandbox, "s3-credentials", "first" if n == 0 else f"rerun{n}", s3c_cmd, s3c_env, tmp)

    print()
    print(TARGET)
    first_total = counts[0][0]
    rerun_mutating = [m for _, m in counts[1:]]
    print(f"  provision first run: {first_total} requests: {'met' if first_total <= FIRST_RUN_MAX else 'NOT met'}")
    print(
        f"  provision re-runs mutating: {', '.join(map(str, rerun_mutating))}: "
        f"{'met' if not any(rerun_mutating) else 'NOT met'}"
    )
    print()
    report_keys(info, f"provision-{p1}-readonly")


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Start the sandbox in a temp dir, run the benchmark, always stop the sandbox and remove the temp dir."""
    signal.signal(signal.SIGTERM, _terminate)
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-calls-"))
    env = base_env(tmp)
    info: dict[str, Any] | None = None
    try:
        proc = run([PROVISION, "sandbox", "up"], env, tmp)
        endpoints = tmp / "sandbox" / "endpoints.json"
        if endpoints.exists():
            info = json.loads(endpoints.read_text())
        if proc.returncode != 0 or info is None:
            sys.exit(f"`provision sandbox up` failed (exit {proc.returncode}): {proc.stderr.strip()}")
        bench(env, tmp, info)
    finally:
        stop_sandbox(env, tmp, info)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
