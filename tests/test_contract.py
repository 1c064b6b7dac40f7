"""The contract every provider passes, against its emulator in the sandbox (shared/STYLE.md "One contract suite"):
a re-run is quiet, dry runs make no mutating request, a fault at every mutating step converges on re-run and
destroys to zero, destroy spares adopted buckets and refuses non-empty ones, status finds a missing bucket, and the
env lock holds. Each provider plugs in through a small `Harness` (how to call it, how to see its emulator)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from provision import sandbox
from provision.models import Access
from provision.policies import s3_policy
from provision.state import StateStore
from tests.conftest import Admin, AzureAdmin, Cli, GcsAdmin, read_state


class Harness:
    """How the suite drives one provider and looks at its emulator."""

    name = ""
    bucket_kind = "bucket"
    render_target = "supervisely"
    fault = {"count": 10, "status": 500}

    def args(self, prefix: str, full: bool = False, buckets: list[str] | None = None) -> list[str]:
        raise NotImplementedError

    @property
    def log_url(self) -> str:
        raise NotImplementedError

    def names(self, prefix: str) -> list[str]:
        """Everything on the emulator whose name holds ``prefix`` (buckets, and users/keys where there are any)."""
        raise NotImplementedError

    def make_bucket(self, name: str, key: str, data: bytes) -> None:
        raise NotImplementedError

    def read(self, bucket: str, key: str) -> bytes:
        raise NotImplementedError

    def put(self, bucket: str, key: str, data: bytes) -> None:
        raise NotImplementedError

    def drop_bucket(self, name: str) -> None:
        raise NotImplementedError

    def converged(self, prefix: str) -> None:
        """Provider-specific checks that a ``--full --prefix`` run reached its end state (beyond the buckets)."""

    def mutating(self) -> list[dict[str, Any]]:
        return [e for e in sandbox.request_log(self.log_url) if e["mutating"]]

    def reset_log(self) -> None:
        sandbox.control(self.log_url, "requests/reset")

    def log(self) -> list[dict[str, Any]]:
        return sandbox.request_log(self.log_url)


class S3(Harness):
    name = "s3"

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def args(self, prefix: str, full: bool = False, buckets: list[str] | None = None) -> list[str]:
        return ["s3", "--env", "sandbox", *(buckets or ["--prefix", prefix]), *(["--full"] if full else [])]

    @property
    def log_url(self) -> str:
        return self.admin.info.s3.endpoint_url

    def names(self, prefix: str) -> list[str]:
        iam, s3 = self.admin.iam, self.admin.s3
        users = [u["UserName"] for u in iam.list_users()["Users"] if prefix in u["UserName"]]
        return sorted([b["Name"] for b in s3.list_buckets()["Buckets"] if prefix in b["Name"]] + users
                      + [k["AccessKeyId"] for u in users for k in iam.list_access_keys(UserName=u)["AccessKeyMetadata"]]
                      + [r["RoleName"] for r in iam.list_roles()["Roles"] if prefix in r["RoleName"]])

    def converged(self, prefix: str) -> None:
        user = f"provision-{prefix}-full"
        state = read_state()
        keys = self.admin.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        assert [k["AccessKeyId"] for k in keys] == [state["grant"]["auth"]["access_key"]]
        policy = self.admin.iam.get_user_policy(UserName=user, PolicyName="provision-buckets")["PolicyDocument"]
        assert policy == s3_policy([f"{prefix}-public", f"{prefix}-private"], Access.full)
        for bucket in (f"{prefix}-public", f"{prefix}-private"):
            pab = self.admin.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert all(pab.values())
            assert self.admin.s3.get_bucket_encryption(Bucket=bucket)
        assert {r["kind"] for r in state["resources"]} == {"bucket", "iam_user", "user_policy", "access_key"}
        assert all(r["created"] for r in state["resources"])

    def make_bucket(self, name: str, key: str, data: bytes) -> None:
        self.admin.s3.create_bucket(Bucket=name)
        self.put(name, key, data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.admin.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.admin.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def drop_bucket(self, name: str) -> None:
        self.admin.s3.delete_bucket(Bucket=name)


class Azure(Harness):
    name = "azure"
    bucket_kind = "container"
    render_target = "cvat"  # Supervisely's Azure backend takes the account key, not the SAS this suite issues

    def __init__(self, admin: AzureAdmin) -> None:
        self.admin = admin

    def args(self, prefix: str, full: bool = False, buckets: list[str] | None = None) -> list[str]:
        return ["azure", "--env", "sandbox", *(buckets or ["--prefix", prefix]), *(["--full"] if full else [])]

    @property
    def log_url(self) -> str:
        return self.admin.endpoint.blob_url

    def names(self, prefix: str) -> list[str]:
        return sorted(c.name for c in self.admin.blob.list_containers(name_starts_with=prefix))

    def converged(self, prefix: str) -> None:
        from urllib.parse import parse_qs

        state = read_state()
        assert {(r["kind"], r["name"], r["created"]) for r in state["resources"]} == {
            ("container", f"{prefix}-public", True), ("container", f"{prefix}-private", True)}
        assert set(parse_qs(state["grant"]["auth"]["token"])["sp"][0]) == set("racwdl")

    def make_bucket(self, name: str, key: str, data: bytes) -> None:
        self.admin.blob.create_container(name)
        self.put(name, key, data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.admin.blob.get_container_client(bucket).download_blob(key).readall()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.admin.blob.get_container_client(bucket).upload_blob(key, data, overwrite=True)

    def drop_bucket(self, name: str) -> None:
        self.admin.blob.delete_container(name)


class Gcs(Harness):
    name = "gcs"
    fault = {"count": 10, "status": 400}  # a lasting 5xx is retried for RETRY_SECONDS; a 400 fails at once

    def __init__(self, admin: GcsAdmin) -> None:
        self.admin = admin

    def args(self, prefix: str, full: bool = False, buckets: list[str] | None = None) -> list[str]:
        return ["gcs", "--env", "sandbox", "--keyless", *(buckets or ["--prefix", prefix]),
                *(["--full"] if full else [])]

    @property
    def log_url(self) -> str:
        return self.admin.endpoint.endpoint_url

    def names(self, prefix: str) -> list[str]:
        return sorted(b.name for b in self.admin.storage.list_buckets() if prefix in b.name)

    def make_bucket(self, name: str, key: str, data: bytes) -> None:
        self.admin.storage.create_bucket(name)
        self.put(name, key, data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.admin.storage.bucket(bucket).blob(key).download_as_bytes()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.admin.storage.bucket(bucket).blob(key).upload_from_string(data)

    def drop_bucket(self, name: str) -> None:
        self.admin.storage.bucket(name).delete()


PROVIDERS = ["s3", "azure", "gcs"]


@pytest.fixture(params=PROVIDERS)
def harness(request: pytest.FixtureRequest, sandbox_info: sandbox.SandboxInfo) -> Harness:
    if request.param == "s3":
        return S3(Admin(sandbox_info))
    if request.param == "azure":
        return Azure(request.getfixturevalue("azure_admin"))
    return Gcs(GcsAdmin(sandbox_info))


def run(cli: Cli, *args: str) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return result


def test_rerun_is_quiet(cli: Cli, harness: Harness, prefix: str) -> None:
    first = run(cli, *harness.args(prefix), "--json")
    assert json.loads(first.stdout)["changed"] is True
    grant = read_state()["grant"]
    harness.reset_log()
    again = run(cli, *harness.args(prefix), "--json")
    assert json.loads(again.stdout)["changed"] is False
    assert harness.log(), "the re-run looked at nothing"
    assert harness.mutating() == []
    assert read_state()["grant"] == grant


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
                 ["render-env", "--env", "sandbox", "--target", harness.render_target, "--out", str(out)],
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
    state = read_state()
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
    rows = json.loads(run(cli, "status", "--env", "sandbox", "--json").stdout)["rows"]
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
