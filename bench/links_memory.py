"""Links memory benchmark: ``provision links`` over 1k, 10k and 100k keys, peak memory and time.

Creating 100k objects over HTTP in the sandbox takes minutes (~400 PUTs/s here), so this script runs its own
moto server in a child process (the sandbox's code makes its admin key and switches IAM enforcement on, and the
child's ``endpoints.json`` makes ``--env sandbox`` point at it), and that child puts the keys straight into
moto's in-memory backend (seconds). ``provision s3 --env sandbox --prefix <p> --readonly`` then makes the grant,
and each measurement lists through the real S3 API with the grant's read-only key:

- ``write_links`` in a fresh Python process under ``tracemalloc``: peak of Python allocations (MiB) while writing
  the links file (imports and client set-up excluded: tracing starts right before the call);
- ``provision links --prefix <n>/ --out FILE`` as a subprocess: wall seconds and peak RSS (GNU ``time``'s ``%M``
  when installed, else ``os.wait4``, which also counts this script's own memory).

Bounded memory means the peaks stay flat from 1k to 100k keys (a list of 100k links would be ~10 MiB of strings
alone, and botocore's parsed pages are freed page by page). Each measurement runs on every link of ``--loopback``
/ ``--wan`` (both by default; ``--rtt-ms 30 --mbit 100``): for the WAN, a `wan.WanProxy` is put in front of the
server and ``endpoints.json`` points at it, so the listing pages (1,000 keys each, one after another) each cost a
round trip. It only prints figures; it never asserts.

Run from the repo root: ``.venv/bin/python bench/links_memory.py [--max 100000] [--wan | --loopback]``. ~2-4
minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_link_args, ensure_bytecode, link_name, modes, on_sigterm, provision_source
from wan import WanProxy

REPO = Path(__file__).resolve().parent.parent
GNU_TIME = shutil.which("time")
"""GNU time, for the CLI's peak RSS: ``os.wait4``'s ``ru_maxrss`` of a child also counts the memory it shared
with this process before its ``exec``, so it is never below this script's own RSS."""
BIN = Path(sys.executable).parent
PREFIX = "linksbench"
BUCKET = f"{PREFIX}-public"

SERVER = r'''
import json, os, sys
from datetime import datetime, timezone
from moto.server import ThreadedMotoServer
from provision import sandbox
from provision.files import atomic_write

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
server.start()
host, port = server.get_host_and_port()
endpoint = f"http://{host}:{port}"
info = sandbox.SandboxInfo(pid=os.getpid(), s3=sandbox._make_admin(endpoint), started_at=datetime.now(timezone.utc))
sandbox.sandbox_dir().mkdir(parents=True, exist_ok=True)
atomic_write(sandbox.sandbox_dir() / "endpoints.json", info.model_dump_json().encode())
print("ready", flush=True)
from moto.s3.models import s3_backends
backend = s3_backends["123456789012"]["aws"]
for line in sys.stdin:
    bucket, prefix, count = line.split()
    for i in range(int(count)):
        backend.put_object(bucket, f"{prefix}/img/{i // 1000:04d}/{i:07d}.jpg", b"")
    print("ok", flush=True)
'''

MEASURE = r'''
import io, sys, time, tracemalloc
from provision.links import write_links
from provision.state import StateStore
state = StateStore("sandbox").load()
out = open(sys.argv[2], "w", encoding="utf-8")
write_links(state, io.StringIO(), buckets=[sys.argv[3]], prefix="warm-up/")  # imports, client, first request
tracemalloc.start()
started = time.perf_counter()
report = write_links(state, out, buckets=[sys.argv[3]], prefix=sys.argv[1])
seconds = time.perf_counter() - started
print(report.total, tracemalloc.get_traced_memory()[1], seconds)
'''


def measure(env: dict[str, str], tmp: Path, count: int) -> tuple[int, float, float, int, float, float, float, bool]:
    """``write_links`` under tracemalloc and the ``provision links`` CLI over the keys under ``n<count>/``.

    Returns:
        (links written, tracemalloc peak MiB, write_links seconds, CLI exit code, CLI wall seconds, CLI peak RSS
        MiB, links file MiB, CLI output == library output).
    """
    out = tmp / f"links-{count}.txt"
    measured = subprocess.run([sys.executable, "-c", MEASURE, f"n{count}/", str(out), BUCKET], env=env,
                              cwd=tmp, check=True, capture_output=True, text=True).stdout.split()
    lines, peak, seconds = int(measured[0]), int(measured[1]), float(measured[2])
    cli_out = tmp / f"cli-{count}.txt"
    t0 = time.perf_counter()
    rss = tmp / f"rss-{count}.txt"
    timer = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss)] if GNU_TIME else []
    proc = subprocess.Popen([*timer, str(BIN / "provision"), "links", "--env", "sandbox", "--bucket", BUCKET,
                             "--prefix", f"n{count}/", "--out", str(cli_out)], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    cli_seconds = time.perf_counter() - t0
    peak_rss = int(rss.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss  # KiB
    same = cli_out.read_bytes() == out.read_bytes()
    return (lines, peak / 2**20, seconds, os.waitstatus_to_exitcode(status), cli_seconds, peak_rss / 1024,
            out.stat().st_size / 2**20, same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=100_000, help="largest key count")
    parser.add_argument("--json-out", help="write the rows to this file")
    add_link_args(parser)
    args = parser.parse_args()
    on_sigterm()
    ensure_bytecode()
    counts = sorted({c for c in (1_000, 10_000, args.max) if c <= args.max})
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-links-"))
    print(f"{os.cpu_count()} CPUs; provision from {provision_source()}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROVISION_"))}
    env.update(PROVISION_STATE_DIR=str(tmp / "state"), PROVISION_ENVS_DIR=str(REPO / "envs"),
               AWS_CONFIG_FILE=str(tmp / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"))
    server = subprocess.Popen([sys.executable, "-c", SERVER], env=env, cwd=tmp, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout and server.stdin
        for line in server.stdout:  # moto prints a line of its own first
            if line.strip() == "ready":
                break
        else:
            raise SystemExit("the moto server did not start")
        subprocess.run([str(BIN / "provision"), "s3", "--env", "sandbox", "--prefix", PREFIX, "--readonly",
                        "--json"], env=env, cwd=tmp, check=True, capture_output=True)
        endpoints = tmp / "state" / "sandbox" / "endpoints.json"
        info = json.loads(endpoints.read_text())
        direct = info["s3"]["endpoint_url"]
        made: dict[int, float] = {}
        for count in counts:
            started = time.perf_counter()
            server.stdin.write(f"{BUCKET} n{count} {count}\n")
            server.stdin.flush()
            server.stdout.readline()
            made[count] = time.perf_counter() - started
        rows = []
        for link in modes(args):
            proxy = WanProxy(direct, rtt_ms=link[0], mbit=link[1]) if link else None
            info["s3"]["endpoint_url"] = proxy.start() if proxy else direct
            endpoints.write_text(json.dumps(info))
            try:
                for count in counts:
                    rows.append((link_name(link), count, made[count], *measure(env, tmp, count)))
                    print(f"done: {link_name(link)}, {count} keys", flush=True)
            finally:
                if proxy:
                    proxy.stop()
        print()
        head = (f"{'link':<24} {'keys':>8} {'made in s':>9} {'links':>8} {'tracemalloc peak MiB':>21} "
                f"{'write_links s':>13} {'CLI rc':>6} {'CLI s':>7} {'CLI peak RSS MiB':>16} {'file MiB':>9} "
                f"{'CLI == lib':>10}")
        print(head)
        print("-" * len(head))
        for link, count, made_s, lines, peak, seconds, rc, cli_seconds, rss, size, same in rows:
            print(f"{link:<24} {count:>8} {made_s:>9.1f} {lines:>8} {peak:>21.2f} {seconds:>13.2f} {rc:>6} "
                  f"{cli_seconds:>7.2f} {rss:>16.0f} {size:>9.1f} {str(same):>10}")
        print("\nbounded memory: the tracemalloc peak and the RSS stay flat while the key count grows 100x")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(rows, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
