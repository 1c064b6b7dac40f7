"""A killed ``provision gcs --full --hmac`` or ``provision gcs --full`` (a service-account key file) leaves nothing
lost, leaked or orphaned: the run is a real process
(``python -m provision``) against `tests.gcp_fake.FakeGoogle` (IAM admin over gRPC, the token endpoint, HMAC keys,
and Cloud Storage forwarded to the sandbox's emulator), all served on 127.0.0.1 from this pytest process. The fake
carries out the run's k-th mutating request and, before the answer goes back, SIGKILLs the process (`on_lose`): the
run dies exactly after its k-th mutating request, without seeing its answer, for every k until the run finishes
first. A kill between two requests leaves what a kill at the next request leaves (nothing is persisted but the
state file, which each request's record reaches before the request), so these points cover every outcome.

After each kill: a re-run converges, no HMAC key or service-account key is untracked, and ``destroy`` leaves no
bucket, service account or key of that prefix and nothing tracked."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, GcsAdmin
from tests.gcp_fake import FakeGoogle
from tests.kills import provision_process, sigkill, state_files
from tests.test_gcs import PROJECT, gcs, sa_email
from tests.test_ownership_gcs import live_of

MAX_POINTS = 40
"""A run of ``provision gcs --full --hmac`` makes about ten mutating requests; more means a loop."""


MODES = {"hmac": ["--full", "--hmac"], "key-file": ["--full"]}
"""The credential modes swept: an HMAC key, or a service-account key file."""


def _run_and_kill(fake: FakeGoogle, k: int, *args: str) -> bool:
    """Start ``provision ARGS`` as a process and SIGKILL it from inside the fake once its k-th mutating request was
    carried out, before its answer goes back. Returns True when it was killed, False when it finished (exit 0)
    before making a k-th mutating request."""
    killed: list[int] = []
    fake.reset()
    with provision_process(*args) as process:

        def kill() -> None:  # in the fake's serving thread: nothing of the run executes after this
            sigkill(process)
            killed.append(k)

        fake.on_lose, fake.lose_answer_at = kill, k
        try:
            code = process.wait(timeout=120)
        finally:
            fake.on_lose, fake.lose_answer_at = None, None
    if killed:
        assert code == -signal.SIGKILL, code
        return True
    assert code == 0, code
    return False


def tracked(env: str = "gcp") -> list[dict[str, Any]]:
    """Every resource the state of ``env`` records (no state file: none)."""
    path = Path(os.environ["PROVISION_STATE_DIR"]) / f"{env}.json"
    if not path.exists():
        return []
    return [r for g in json.loads(path.read_text())["grants"].values() for r in g.get("resources", [])]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_kill_after_every_mutating_request_then_rerun_and_destroy_leaves_nothing(
        cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin, prefix: str, mode: str) -> None:
    flags = MODES[mode]
    points: list[str] = []
    orphans: list[str] = []
    untracked: list[str] = []
    k = 1
    while True:
        assert k <= MAX_POINTS, points
        p = f"{prefix}k{k}"
        email = sa_email(f"provision-{p}-rw")
        if not _run_and_kill(google, k, "gcs", "--env", "gcp", "--project", PROJECT, "--prefix", p, *flags,
                             "--no-verify"):  # the run finished before its k-th mutating request: all tried
            done = cli("destroy", "--env", "gcp", "--yes")
            assert done.exit_code == 0, done.output
            assert live_of(google, gcs_admin, f"{p}-") == [] and tracked() == []
            break
        request = google.mutating()[k - 1]
        points.append(f"{request['api']} {request['method']} {request['path'].rsplit('/', 1)[-1][:24]}")
        again = gcs(cli, "--prefix", p, *flags, "--no-verify")
        assert again.exit_code == 0, (k, points[-1], again.output)
        known = {r["name"] for r in tracked() if r["kind"] in ("hmac_key", "sa_key")}
        live_keys = {a for a, m in google.hmac_keys.items() if m["serviceAccountEmail"] == email}
        live_keys |= set(google.user_keys(email))
        untracked += sorted(live_keys - known)
        assert live_keys - known == set(), (k, points[-1])
        want = (1, 0) if mode == "hmac" else (0, 1)  # (HMAC keys, service-account keys)
        assert (len(live_keys - set(google.user_keys(email))), len(google.user_keys(email))) == want, \
            (k, points[-1], live_keys)
        assert not [r for r in tracked() if r["kind"].endswith("_intent")], (k, points[-1])
        done = cli("destroy", "--env", "gcp", "--yes")
        assert done.exit_code == 0, (k, points[-1], done.output)
        orphans += live_of(google, gcs_admin, f"{p}-")
        assert tracked() == [], (k, points[-1], tracked())
        assert state_files() == [], (k, points[-1])
        k += 1
    print(f"gcs {' '.join(flags)} kill points tried: {len(points)} ({'; '.join(points)}); orphans: {orphans}; "
          f"untracked keys after re-run: {untracked}")
    assert len(points) >= 8, points
    assert orphans == [] and untracked == []


def test_destroy_killed_after_any_mutating_request_is_finished_by_the_next_destroy(
        cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin, prefix: str) -> None:
    """``destroy`` killed after its k-th mutating request (its answer lost), for every k: the state still records
    what is left, and the next ``destroy --yes`` removes it all (no bucket, service account or key of the prefix)."""
    points: list[str] = []
    k = 1
    while True:
        assert k <= MAX_POINTS, points
        p = f"{prefix}d{k}"
        made = gcs(cli, "--prefix", p, "--full", "--hmac", "--no-verify")
        assert made.exit_code == 0, made.output
        if not _run_and_kill(google, k, "destroy", "--env", "gcp", "--yes"):  # finished first: all points tried
            assert tracked() == [] and live_of(google, gcs_admin, f"{p}-") == []
            break
        request = google.mutating()[k - 1]
        points.append(f"{request['api']} {request['method']} {request['path'].rsplit('/', 1)[-1][:24]}")
        assert tracked(), (k, points[-1], "the killed destroy forgot what it had not yet deleted")
        again = cli("destroy", "--env", "gcp", "--yes")
        assert again.exit_code == 0, (k, points[-1], again.output)
        assert tracked() == [] and live_of(google, gcs_admin, f"{p}-") == [], (k, points[-1])
        k += 1
    print(f"destroy kill points tried: {len(points)} ({'; '.join(points)}); orphans: 0")
    assert len(points) >= 5, points
