"""The contract every provider passes, against its emulator in the sandbox (shared/STYLE.md "One contract suite"):
a re-run is quiet, dry runs make no mutating request, a fault at every mutating step converges on re-run and
destroys to zero, destroy spares adopted buckets and refuses non-empty ones, status finds a missing bucket, and the
env lock holds, and verify proves the grant (reads allowed, writes only for full, data outside the grant
denied). Each provider plugs in through a small `Harness` (how to call it, how to see its emulator)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provision import sandbox
from provision.state import StateStore
from tests.conftest import Cli, read_grant
from tests.harnesses import Harness, run


def test_rerun_is_quiet(cli: Cli, harness: Harness, prefix: str) -> None:
    first = run(cli, *harness.args(prefix), "--json")
    assert json.loads(first.stdout)["changed"] is True
    grant = read_grant()["grant"]
    harness.reset_log()
    again = run(cli, *harness.args(prefix), "--json")
    assert json.loads(again.stdout)["changed"] is False
    assert harness.log(), "the re-run looked at nothing"
    assert harness.mutating() == []
    assert read_grant()["grant"] == grant


def test_dry_runs_make_no_mutating_request(cli: Cli, harness: Harness, prefix: str, workdir: Path) -> None:
    harness.reset_log()
    plan = json.loads(run(cli, *harness.args(prefix), "--dry-run", "--json").stdout)
    assert {c["action"] for c in plan["changes"]} >= {"create"}
    assert harness.mutating() == [] and harness.names(prefix) == []
    assert not (workdir / ".provision" / "sandbox.json").exists()
    run(cli, *harness.args(prefix))
    before = harness.names(prefix)
    out = workdir / "out"
    out.mkdir()
    harness.reset_log()
    for args in (harness.args(prefix, full=True), [*harness.args(prefix), "--rotate"],
                 ["render-env", "--env", "sandbox", *harness.render_args, "--out", str(out)],
                 ["destroy", "--env", "sandbox", "--delete-data"]):
        run(cli, *args, "--dry-run")
    assert harness.mutating() == []
    assert list(out.iterdir()) == []
    assert harness.names(prefix) == before
    destroy = json.loads(run(cli, "destroy", "--env", "sandbox", "--dry-run", "--json").stdout)
    assert ("delete", harness.bucket_kind) in {(c["action"], c["kind"]) for c in destroy["changes"]}


def count_steps(cli: Cli, harness: Harness, prefix: str) -> int:
    harness.reset_log()
    run(cli, *harness.args(prefix, full=True), "--no-verify")
    steps = len(harness.mutating())
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert harness.names(prefix) == []
    return steps


def test_fault_at_every_mutating_step_converges_and_destroys_to_zero(cli: Cli, harness: Harness, prefix: str,
                                                                   workdir: Path) -> None:
    steps = count_steps(cli, harness, f"{prefix}c")
    assert steps >= 2
    for k in range(1, steps + 1):
        p = f"{prefix}k{k}"
        sandbox.control(harness.log_url, "faults", {"fail_mutating_at": k, **harness.fault})
        try:
            failed = cli(*harness.args(p, full=True), "--no-verify")
        finally:
            sandbox.control(harness.log_url, "faults", {})
        assert failed.exit_code in (3, 4), (k, failed.output)
        assert len(failed.stderr.strip().splitlines()) == 1, (k, failed.stderr)
        again = cli(*harness.args(p, full=True))
        assert again.exit_code == 0, (k, again.output)
        assert harness.names(p) != []
        harness.converged(p)
        harness.reset_log()
        assert json.loads(run(cli, *harness.args(p, full=True), "--json").stdout)["changed"] is False, k
        assert harness.mutating() == [], k
        done = cli("destroy", "--env", "sandbox", "--yes")
        assert done.exit_code == 0, (k, done.output)
        assert harness.names(p) == [], k
        assert not (workdir / ".provision" / "sandbox.json").exists(), k


def test_destroy_spares_adopted_bucket_and_its_objects(cli: Cli, harness: Harness, prefix: str) -> None:
    adopted, created = f"{prefix}-legacy", f"{prefix}-new"
    harness.make_bucket(adopted, "keep/me.jpg", b"precious")
    run(cli, *harness.args(prefix, full=True, buckets=[adopted, created]))
    result = run(cli, "destroy", "--env", "sandbox", "--yes")
    assert "left in place" in result.stderr and adopted in result.stderr
    assert harness.read(adopted, "keep/me.jpg") == b"precious"
    assert adopted in harness.names(prefix) and created not in harness.names(prefix)
    state = read_grant()
    assert state["grant"] is None
    assert [(r["kind"], r["name"], r["created"]) for r in state["resources"]] == [(harness.bucket_kind, adopted, False)]


def test_destroy_refuses_non_empty_bucket_without_delete_data(cli: Cli, harness: Harness, prefix: str) -> None:
    run(cli, *harness.args(prefix, full=True))
    harness.put(f"{prefix}-private", "data.bin", b"x")
    before = harness.names(prefix)
    harness.reset_log()
    refused = cli("destroy", "--env", "sandbox", "--yes")
    assert refused.exit_code == 2, refused.output
    assert "--delete-data" in refused.stderr and f"{prefix}-private" in refused.stderr
    assert harness.mutating() == [] and harness.names(prefix) == before
    run(cli, "destroy", "--env", "sandbox", "--yes", "--delete-data")
    assert harness.names(prefix) == []


def test_status_finds_a_missing_bucket(cli: Cli, harness: Harness, prefix: str) -> None:
    run(cli, *harness.args(prefix))
    clean = json.loads(run(cli, "status", "--env", "sandbox", "--json").stdout)
    assert clean["in_sync"] is True and clean["rows"] == []
    harness.drop_bucket(f"{prefix}-private")
    harness.reset_log()
    drifted = cli("status", "--env", "sandbox", "--json")
    assert drifted.exit_code == 6, drifted.output  # drift found
    rows = json.loads(drifted.stdout)["rows"]
    assert harness.mutating() == []
    assert (harness.bucket_kind, f"{prefix}-private", "missing") in {
        (r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows}
    assert all(r["fix"].startswith(f"provision {harness.name} --env sandbox") for r in rows)
    run(cli, *harness.args(prefix))
    assert f"{prefix}-private" in harness.names(prefix)


def test_second_run_on_a_locked_env_names_the_holder(cli: Cli, harness: Harness, prefix: str) -> None:
    harness.reset_log()
    with StateStore("sandbox").lock():
        result = cli(*harness.args(prefix))
    assert result.exit_code == 2
    assert f"pid {os.getpid()}" in result.stderr
    assert harness.mutating() == []


def test_a_lost_answer_to_the_first_create_is_settled(cli: Cli, harness: Harness, prefix: str) -> None:
    """The cloud carries out the first create but its answer is lost (a 503 after the fact): the SDK retries
    into "already exists", the run still succeeds, the bucket is tracked as created, and destroy leaves zero."""
    sandbox.control(harness.log_url, "faults", {"fail_mutating_at": 1, "count": 1, "status": 503, "after": True})
    try:
        result = cli(*harness.args(prefix))
    finally:
        sandbox.control(harness.log_url, "faults", {})
    assert result.exit_code == 0, result.output
    assert (harness.bucket_kind, f"{prefix}-public", True) in {
        (r["kind"], r["name"], r["created"]) for r in read_grant()["resources"]}
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert harness.names(prefix) == []


def test_verify_proves_readonly_and_full_grants(cli: Cli, harness: Harness, prefix: str, workdir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`provision verify --json` on a read-only and on a full grant: every row ok, a read allowed, a write allowed
    only for full, data outside the grant denied."""
    read_op, write_op, (other_op, other_marker) = harness.probes["read"][0], harness.probes["write"][0], \
        harness.probes["other"]
    with harness.verifiable(monkeypatch, workdir):
        for full in (False, True):
            p = f"{prefix}{'f' if full else 'r'}"
            run(cli, *harness.verify_args(p, full=full), "--no-verify")
            doc = json.loads(run(cli, "verify", "--env", harness.verify_env, "--json").stdout)
            rows = doc["rows"]
            assert rows and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
            mine = {(r["operation"], r["expected"]) for r in rows if p in r["target"] and "another" not in r["target"]}
            # a plain write of the grant's object (no qualifier such as "(x-amz-acl: public-read)", which is
            # denied for every grant) follows the grant's access exactly
            plain = {(r["operation"], r["expected"]) for r in rows
                     if p in r["target"] and "another" not in r["target"] and " (" not in r["target"]}
            assert (read_op, "allow") in mine, rows
            assert (write_op, "allow" if full else "deny") in plain, rows
            assert (write_op, "deny" if full else "allow") not in plain, rows
            if not full:  # a read-only grant may write nothing, qualified or not
                assert (write_op, "allow") not in mine, rows
            assert any(r["operation"] == other_op and other_marker in r["target"] and r["expected"] == "deny"
                       for r in rows), rows
            run(cli, "destroy", "--env", harness.verify_env, "--yes", "--delete-data")
            assert harness.names(p) == []
