"""Startup benchmark: wall time of ``provision --help`` vs ``s3-credentials --help``.

Both console scripts are taken from the bin directory of the running interpreter (the virtualenv) and run as
subprocesses, interleaved in one loop (the order alternates each round so neither always runs on a warmer cache):
3 warm-up rounds, then 20 measured rounds. Prints the median of each in ms, the ratio provision/s3-credentials and
whether the targets are met. It only prints figures; it never fails on a timing.

Run from the repo root: ``.venv/bin/python bench/startup.py``
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

WARMUP = 3
RUNS = 20
TARGET_MS = 150.0
TARGET_RATIO = 0.5
BIN = Path(sys.executable).parent
TOOLS = {"provision": BIN / "provision", "s3-credentials": BIN / "s3-credentials"}


def time_help(script: Path) -> float:
    """Run ``script --help`` once; return its wall time in ms. Exits the benchmark if the command fails."""
    start = time.perf_counter()
    proc = subprocess.run([str(script), "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        sys.exit(f"{script} --help exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    """Measure, then print the medians, the ratio and the verdict."""
    for name, script in TOOLS.items():
        if not script.exists():
            sys.exit(f"{name} not found at {script}")
    samples: dict[str, list[float]] = {name: [] for name in TOOLS}
    names = list(TOOLS)
    for round_no in range(WARMUP + RUNS):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            elapsed = time_help(TOOLS[name])
            if round_no >= WARMUP:
                samples[name].append(elapsed)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["provision"] / medians["s3-credentials"]
    print(f"startup: `--help` wall time, median of {RUNS} runs after {WARMUP} warm-ups (interleaved)")
    for name in names:
        values = samples[name]
        print(f"  {name:<15} median {medians[name]:7.1f} ms   (min {min(values):7.1f}, max {max(values):7.1f})")
    print(f"  ratio provision/s3-credentials: {ratio:.2f}x")
    print(f"target: <= {TARGET_MS:.0f} ms and <= {TARGET_RATIO}x s3-credentials")
    abs_ok = medians["provision"] <= TARGET_MS
    ratio_ok = ratio <= TARGET_RATIO
    print(f"  absolute: {'met' if abs_ok else 'NOT met'} ({medians['provision']:.1f} ms)")
    print(f"  ratio:    {'met' if ratio_ok else 'NOT met'} ({ratio:.2f}x)")
    print(f"result: {'meets' if abs_ok and ratio_ok else 'does NOT meet'} the targets")


if __name__ == "__main__":
    main()
