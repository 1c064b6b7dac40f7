"""Lifecycle on the enforcing sandbox: fault at every mutating step then converge and destroy to zero, dry-run
makes no mutating request, status finds drift, destroy spares adopted resources, rotate, the env lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from provision import sandbox
from provision.models import Access
from provision.policies import s3_policy
from provision.state import StateStore
from tests.conftest import Admin, Cli, read_state


def emulator_resources(admin: Admin, prefix: str) -> dict[str, list[str]]:
    """Everything on the emulator whose name holds ``prefix``: buckets, users, roles, instance profiles, keys."""
    users = [u["UserName"] for u in admin.iam.list_users()["Users"] if prefix in u["UserName"]]
    return {
        "buckets": [b["Name"] for b in admin.s3.list_buckets()["Buckets"] if prefix in b["Name"]],
        "users": users,
        "keys": [k["AccessKeyId"] for u in users for k in admin.iam.list_access_keys(UserName=u)["AccessKeyMetadata"]],
        "roles": [r["RoleName"] for r in admin.iam.list_roles()["Roles"] if prefix in r["RoleName"]],
        "instance_profiles": [p["InstanceProfileName"] for p in admin.iam.list_instance_profiles()["InstanceProfiles"]
                              if prefix in p["InstanceProfileName"]],
    }


def assert_converged(admin: Admin, prefix: str) -> None:
    user = f"provision-{prefix}-full"
    state = read_state()
    keys = admin.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [state["grant"]["auth"]["access_key"]]
    policy = admin.iam.get_user_policy(UserName=user, PolicyName="provision-buckets")["PolicyDocument"]
    assert policy == s3_policy([f"{prefix}-public", f"{prefix}-private"], Access.full)
    for bucket in (f"{prefix}-public", f"{prefix}-private"):
        assert admin.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
        assert admin.s3.get_bucket_encryption(Bucket=bucket)
    assert {r["kind"] for r in state["resources"]} == {"bucket", "iam_user", "user_policy", "access_key"}
    assert all(r["created"] for r in state["resources"])


def count_mutating_steps(cli: Cli, admin: Admin, prefix: str) -> int:
    admin.reset_log()
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--no-verify").exit_code == 0
    steps = len(admin.mutating())
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    return steps


def test_fault_at_every_mutating_step_converges_and_destroys_to_zero(cli: Cli, admin: Admin, prefix: str,
                                                                   workdir: Path) -> None:
    steps = count_mutating_steps(cli, admin, f"{prefix}c")
    assert steps == 9  # 2 x (CreateBucket, PutPublicAccessBlock, PutBucketEncryption), CreateUser, PutUserPolicy, Key
    for k in range(1, steps + 1):
        p = f"{prefix}k{k}"
        sandbox.control(admin.info.s3.endpoint_url, "faults", {"fail_mutating_at": k, "count": 5})
        failed = cli("s3", "--env", "sandbox", "--prefix", p, "--full", "--no-verify")
        sandbox.control(admin.info.s3.endpoint_url, "faults", {})
        assert failed.exit_code in (3, 4), (k, failed.output)
        assert len(failed.stderr.strip().splitlines()) == 1
        if failed.exit_code == 4:
            assert any(r["created"] for r in read_state()["resources"])
        again = cli("s3", "--env", "sandbox", "--prefix", p, "--full")
        assert again.exit_code == 0, (k, again.output)
        assert_converged(admin, p)
        done = cli("destroy", "--env", "sandbox", "--yes")
        assert done.exit_code == 0, (k, done.output)
        assert emulator_resources(admin, p) == {"buckets": [], "users": [], "keys": [], "roles": [],
                                                "instance_profiles": []}, k
        assert not (workdir / ".provision" / "sandbox.json").exists()


def test_iam_role_mode_destroys_to_zero(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--iam-role", f"{prefix}-role").exit_code == 0
    assert emulator_resources(admin, prefix)["instance_profiles"] == [f"{prefix}-role"]
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert emulator_resources(admin, prefix) == {"buckets": [], "users": [], "keys": [], "roles": [],
                                                 "instance_profiles": []}


def test_dry_runs_make_no_mutating_request(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    out = workdir / "sv"
    out.mkdir()
    before = emulator_resources(admin, prefix)
    admin.reset_log()
    for args in (["s3", "--env", "sandbox", "--prefix", prefix, "--full"],
                 ["s3", "--env", "sandbox", "--prefix", prefix, "--rotate"],
                 ["render-env", "--env", "sandbox", "--out", str(out)],
                 ["destroy", "--env", "sandbox", "--delete-data"]):
        result = cli(*args, "--dry-run")
        assert result.exit_code == 0, (args, result.output)
    assert admin.log(), "the dry runs read nothing: they cannot have planned anything"
    assert admin.mutating() == []
    assert list(out.iterdir()) == []
    assert emulator_resources(admin, prefix) == before
    plan = json.loads(cli("destroy", "--env", "sandbox", "--dry-run", "--json").stdout)
    assert {(c["action"], c["kind"]) for c in plan["changes"]} >= {("delete", "bucket"), ("delete", "iam_user"),
                                                                   ("delete", "access_key")}


def test_destroy_spares_adopted_bucket_and_its_objects(cli: Cli, admin: Admin, prefix: str) -> None:
    adopted, created = f"{prefix}-legacy", f"{prefix}-new"
    admin.s3.create_bucket(Bucket=adopted)
    admin.s3.put_object(Bucket=adopted, Key="keep/me.jpg", Body=b"precious")
    assert cli("s3", adopted, created, "--env", "sandbox", "--full").exit_code == 0
    result = cli("destroy", "--env", "sandbox", "--yes")
    assert result.exit_code == 0, result.output
    assert "left in place" in result.stderr and adopted in result.stderr
    assert admin.s3.get_object(Bucket=adopted, Key="keep/me.jpg")["Body"].read() == b"precious"
    left = emulator_resources(admin, prefix)
    assert left["buckets"] == [adopted] and left["users"] == [] and left["keys"] == []
    state = read_state()
    assert state["grant"] is None
    assert state["resources"] == [{"kind": "bucket", "name": adopted, "created": False, "parent": None}]


def test_destroy_refuses_non_empty_bucket_without_delete_data(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--full").exit_code == 0
    admin.s3.put_object(Bucket=f"{prefix}-private", Key="data.bin", Body=b"x")
    before = emulator_resources(admin, prefix)
    admin.reset_log()
    refused = cli("destroy", "--env", "sandbox", "--yes")
    assert refused.exit_code == 2
    assert "--delete-data" in refused.stderr and f"{prefix}-private" in refused.stderr
    assert admin.mutating() == [] and emulator_resources(admin, prefix) == before
    assert cli("destroy", "--env", "sandbox", "--yes", "--delete-data").exit_code == 0
    assert emulator_resources(admin, prefix)["buckets"] == []


def test_destroy_without_terminal_needs_yes(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    admin.reset_log()
    result = cli("destroy", "--env", "sandbox")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert admin.log() == []


def test_rotate_issues_verifies_rerenders_then_revokes(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    out = workdir / "sv"
    out.mkdir()
    assert cli("render-env", "--env", "sandbox", "--out", str(out)).exit_code == 0
    old = read_state()["grant"]["auth"]
    admin.reset_log()
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--rotate")
    assert result.exit_code == 0, result.output
    new = read_state()["grant"]["auth"]
    assert new["access_key"] != old["access_key"]
    iam_steps = [e["action"] for e in admin.mutating() if e["service"] == "iam"]
    assert iam_steps == ["CreateAccessKey", "DeleteAccessKey"]  # the old key goes last, so at most 2 exist
    keys = admin.iam.list_access_keys(UserName=f"provision-{prefix}-readonly")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [new["access_key"]]
    env_text = (out / ".env").read_text()
    assert f"STORAGE_SECRET_KEY={new['secret_key']}" in env_text and old["secret_key"] not in env_text
    assert new["secret_key"] in (out / "remote_links.yml").read_text()
    with pytest.raises(ClientError):
        admin.client("s3", old["access_key"], old["secret_key"]).list_objects_v2(Bucket=f"{prefix}-public")
    assert old["secret_key"] not in result.output and new["secret_key"] not in result.output


def test_status_reports_drift_without_changing_anything(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    clean = json.loads(cli("status", "--env", "sandbox", "--json").stdout)
    assert clean["in_sync"] is True and clean["rows"] == []
    user = f"provision-{prefix}-readonly"
    admin.iam.delete_access_key(UserName=user, AccessKeyId=read_state()["grant"]["auth"]["access_key"])
    admin.iam.put_user_policy(UserName=user, PolicyName="provision-buckets", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    admin.s3.delete_public_access_block(Bucket=f"{prefix}-public")
    admin.s3.delete_bucket_encryption(Bucket=f"{prefix}-public")
    admin.s3.delete_bucket(Bucket=f"{prefix}-private")
    admin.reset_log()
    result = cli("status", "--env", "sandbox", "--json")
    assert result.exit_code == 0
    assert admin.mutating() == []
    rows = json.loads(result.stdout)["rows"]
    problems = {(r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows}
    assert ("bucket", f"{prefix}-private", "missing") in problems
    assert ("bucket", f"{prefix}-public", "drifted") in problems
    assert ("user_policy", f"{user}/provision-buckets", "drifted") in problems
    assert ("access_key", user, "credential missing or unusable") in problems
    assert all(r["fix"].startswith(f"provision s3 --env sandbox --prefix {prefix} --readonly") for r in rows)
    human = cli("status", "--env", "sandbox")
    assert "drift" in human.stderr and "missing" in human.stderr


def test_second_run_on_a_locked_env_names_the_holder(cli: Cli, admin: Admin, prefix: str) -> None:
    admin.reset_log()
    with StateStore("sandbox").lock():
        result = cli("s3", "--env", "sandbox", "--prefix", prefix)
    assert result.exit_code == 2
    assert f"pid {os.getpid()}" in result.stderr
    assert admin.mutating() == []
