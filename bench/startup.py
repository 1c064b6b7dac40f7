"""Startup benchmark: wall time of ``provision --help``, ``provision s3 --help`` and ``provision render-env --help``
vs ``s3-credentials --help``.

Both console scripts are taken from the bin directory of the running interpreter (the virtualenv) and run as
subprocesses, interleaved in one loop (the order rotates each round so no command always runs on a warmer cache):
3 warm-up rounds, then 20 measured rounds. Prints the median of each in ms, each provision command's ratio to
s3-credentials and whether the targets are met (`provision --help` <= 150 ms and <= 0.5x; `provision s3 --help`
<= 0.5x). It only prints figures; it never fails on a timing.

Run from the repo root: ``.venv/bin/python bench/startup.py [--rounds 20]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ensure_bytecode

WARMUP = 3
TARGET_MS = 150.0
TARGET_RATIO = 0.5
BIN = Path(sys.executable).parent
PEER = "s3-credentials --help"
COMMANDS = {
    "provision --help": [BIN / "provision", "--help"],
    "provision s3 --help": [BIN / "provision", "s3", "--help"],
    "provision render-env --help": [BIN / "provision", "render-env", "--help"],
    PEER: [BIN / "s3-credentials", "--help"],
}


def time_help(argv: list[Path | str]) -> float:
    """Run ``argv`` once; return its wall time in ms. Exits the benchmark if the command fails."""
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        sys.exit(f"{argv} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    """Measure, then print the medians, the ratios and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (after 3 warm-ups)")
    rounds = parser.parse_args().rounds
    ensure_bytecode()
    for argv in COMMANDS.values():
        if not Path(argv[0]).exists():
            sys.exit(f"{argv[0]} not found")
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    names = list(COMMANDS)
    for round_no in range(WARMUP + rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = time_help(COMMANDS[name])
            if round_no >= WARMUP:
                samples[name].append(elapsed)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"startup: wall time, median of {rounds} runs after {WARMUP} warm-ups (interleaved)")
    for name in names:
        values = samples[name]
        ratio = "" if name == PEER else f"   {medians[name] / medians[PEER]:.2f}x s3-credentials"
        print(f"  {name:<28} median {medians[name]:7.1f} ms   (min {min(values):7.1f}, max {max(values):7.1f}){ratio}")
    verdicts = {
        f"provision --help <= {TARGET_MS:.0f} ms": medians["provision --help"] <= TARGET_MS,
        f"provision --help <= {TARGET_RATIO}x": medians["provision --help"] / medians[PEER] <= TARGET_RATIO,
        f"provision s3 --help <= {TARGET_RATIO}x": medians["provision s3 --help"] / medians[PEER] <= TARGET_RATIO,
    }
    for what, ok in verdicts.items():
        print(f"  {what:<32} {'met' if ok else 'NOT met'}")
    print(f"result: {'meets' if all(verdicts.values()) else 'does NOT meet'} the targets")


if __name__ == "__main__":
    main()
