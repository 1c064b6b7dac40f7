"""``provision verify`` of a 20-bucket grant and ``provision status``: wall time and HTTP requests, loopback and WAN.

For each link of ``--loopback`` / ``--wan`` (both by default; ``--rtt-ms 30 --mbit 100``: the `wan.WanProxy`
between provision and the sandbox's S3/IAM port, see `common.Site`): a fresh sandbox, one read-only grant on
``--buckets`` buckets (default 20: ``provision s3 bench-v-01 ... --env sandbox --readonly --no-verify``), then
``--rounds`` times (default 3) ``provision verify --env sandbox`` and ``provision status --env sandbox`` as
subprocesses (start-up included), each with the sandbox's request log reset before it: wall seconds, exit code and
requests (total and per service), the CPU seconds of provision and of the sandbox. Prints medians and
the targets (``verify <= 2 s, status <= 1 s`` at 30 ms / 100 Mbit/s). ``--json-out FILE`` saves the medians.

It only prints figures; it never asserts. Run from the repo root:
``.venv/bin/python bench/verify_status.py [--buckets 20] [--rounds 3] [--wan | --loopback]``. ~1 minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    PROVISION,
    Site,
    add_link_args,
    ensure_bytecode,
    link_name,
    measured,
    modes,
    on_sigterm,
    provision_source,
)

TARGETS = {"verify": 2.0, "status": 1.0}
WORKERS = 16
"""Requests provision runs at once in verify and in status's bucket reads (`provision.providers.base.PROBE_WORKERS`)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far (``/proc/PID/stat``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(site: Site, command: str) -> dict[str, Any]:
    """One ``provision <command> --env sandbox`` with the log reset before it: seconds, rc, requests, the CPU
    seconds of provision's process and of the sandbox's server during the run."""
    site.control("requests/reset")
    before = cpu_seconds(site.pid)
    run = measured([PROVISION, command, "--env", "sandbox"], site.env, site.state)
    server = cpu_seconds(site.pid) - before
    log = site.control("requests")
    if run["rc"]:
        print(f"  {command}: exit {run['rc']}: {(run['stderr'] or run['stdout']).strip()[-300:]}", flush=True)
    services: dict[str, int] = {}
    for entry in log:
        services[entry.get("service") or "?"] = services.get(entry.get("service") or "?", 0) + 1
    return {"seconds": run["seconds"], "rc": run["rc"], "requests": len(log), "services": services,
            "cpu": run["cpu"], "server_cpu": server}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", type=int, default=20, help="buckets in the grant")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command (median reported)")
    parser.add_argument("--json-out", help="write the medians to this file")
    add_link_args(parser)
    args = parser.parse_args()
    on_sigterm()
    ensure_bytecode()
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-verify-"))
    summary: dict[str, Any] = {}
    print(f"{os.cpu_count()} CPUs; provision from {provision_source()}", flush=True)
    try:
        for link in modes(args):
            site = Site(tmp / ("wan" if link else "loopback"), link)
            try:
                buckets = [f"bench-v-{i:02d}" for i in range(1, args.buckets + 1)]
                started = time.perf_counter()
                site.provision("s3", *buckets, "--env", "sandbox", "--readonly", "--no-verify", "--json")
                print(f"{link_name(link)}: grant on {len(buckets)} buckets made in {time.perf_counter() - started:.1f}"
                      f" s", flush=True)
                runs: dict[str, list[dict[str, Any]]] = {"verify": [], "status": []}
                for round_ in range(args.rounds):
                    for command in (["verify", "status"] if round_ % 2 == 0 else ["status", "verify"]):
                        runs[command].append(timed(site, command))
                for command, rows in runs.items():
                    seconds = statistics.median(r["seconds"] for r in rows)
                    requests = statistics.median(r["requests"] for r in rows)
                    rc = max(r["rc"] for r in rows)
                    summary[f"{link_name(link)}, {command}"] = {
                        "seconds": seconds, "requests": requests, "rc": rc, "services": rows[0]["services"],
                        "cpu": statistics.median(r["cpu"] for r in rows),
                        "server_cpu": statistics.median(r["server_cpu"] for r in rows)}
            finally:
                site.down()
        print(f"\nmedians of {args.rounds} run(s), a grant on {args.buckets} buckets")
        head = (f"{'link, command':<40} {'seconds':>8} {'requests':>9} {'rc':>3} {'CPU s':>6} {'sandbox CPU s':>14}"
                f"  by service")
        print(head)
        print("-" * len(head))
        for title, row in summary.items():
            print(f"{title:<40} {row['seconds']:>8.2f} {row['requests']:>9.0f} {row['rc']:>3} {row['cpu']:>6.2f} "
                  f"{row['server_cpu']:>14.2f}  {', '.join(f'{k} {v}' for k, v in sorted(row['services'].items()))}")
        print(f"(CPU s: provision's own process; sandbox CPU s: the emulator's, which a real cloud does not spend on "
              f"this machine's {os.cpu_count()} cores)")
        print("\ntargets (at 30 ms / 100 Mbit/s): verify <= 2 s, status <= 1 s")
        for title, row in summary.items():
            command = title.rsplit(", ", 1)[1]
            if title.startswith("WAN"):
                ok = row["seconds"] <= TARGETS[command] and row["rc"] == 0
                waves = -(-row["requests"] // WORKERS)
                print(f"  {title}: {row['seconds']:.2f} s -> {'met' if ok else 'NOT met'} ({row['requests']:.0f} "
                      f"requests, {WORKERS} at once: >= {waves * args.rtt_ms / 1000:.2f} s of round trips; "
                      f"provision's CPU {row['cpu']:.2f} s)")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(summary, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
