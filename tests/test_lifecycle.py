"""S3-specific lifecycle on the enforcing sandbox: IAM-role mode destroys to zero, dry-run of every command, status
finds each kind of IAM drift, destroy needs --yes without a terminal, rotate keeps at most two keys. What every
provider must do (faults, adopted buckets, locks...) is in test_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Admin, Cli, read_grant


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


def test_destroy_without_terminal_needs_yes(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    admin.reset_log()
    result = cli("destroy", "--env", "sandbox")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert admin.log() == []


def test_rotate_issues_verifies_rerenders_then_revokes(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    """A full grant (the instance storage, in .env) and a read-only one (a Links connection, in remote_links.yml):
    rotating each re-renders the file holding its key, and its old key is revoked last."""
    links = f"{prefix}l"
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--full").exit_code == 0
    assert cli("s3", "--env", "sandbox", "--prefix", links).exit_code == 0
    out = workdir / "sv"
    out.mkdir()
    assert cli("render-env", "--env", "sandbox", "--out", str(out)).exit_code == 0
    old = read_grant(name=prefix)["grant"]["auth"]
    admin.reset_log()
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--rotate")
    assert result.exit_code == 0, result.output
    new = read_grant(name=prefix)["grant"]["auth"]
    assert new["access_key"] != old["access_key"]
    iam_steps = [e["action"] for e in admin.mutating() if e["service"] == "iam"]
    assert iam_steps == ["CreateAccessKey", "DeleteAccessKey"]  # the old key goes last, so at most 2 exist
    keys = admin.iam.list_access_keys(UserName=f"provision-{prefix}-full")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [new["access_key"]]
    env_text = (out / ".env").read_text()
    assert f"STORAGE_SECRET_KEY={new['secret_key']}" in env_text and old["secret_key"] not in env_text
    with pytest.raises(ClientError):
        admin.client("s3", old["access_key"], old["secret_key"]).list_objects_v2(Bucket=f"{prefix}-public")
    assert old["secret_key"] not in result.output and new["secret_key"] not in result.output

    old_links = read_grant(name=links)["grant"]["auth"]
    assert old_links["secret_key"] in (out / "remote_links.yml").read_text()
    rotated = cli("s3", "--env", "sandbox", "--prefix", links, "--rotate")
    assert rotated.exit_code == 0, rotated.output
    new_links = read_grant(name=links)["grant"]["auth"]
    links_text = (out / "remote_links.yml").read_text()
    assert new_links["secret_key"] in links_text and old_links["secret_key"] not in links_text
    assert f"STORAGE_SECRET_KEY={new['secret_key']}" in (out / ".env").read_text()  # the storage is untouched


def test_status_reports_drift_without_changing_anything(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    clean = json.loads(cli("status", "--env", "sandbox", "--json").stdout)
    assert clean["in_sync"] is True and clean["rows"] == []
    user = f"provision-{prefix}-readonly"
    admin.iam.delete_access_key(UserName=user, AccessKeyId=read_grant()["grant"]["auth"]["access_key"])
    admin.iam.put_user_policy(UserName=user, PolicyName=f"provision-sandbox-{prefix}", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    admin.s3.delete_public_access_block(Bucket=f"{prefix}-public")
    admin.s3.delete_bucket_encryption(Bucket=f"{prefix}-public")
    admin.s3.delete_bucket(Bucket=f"{prefix}-private")
    admin.reset_log()
    result = cli("status", "--env", "sandbox", "--json")
    assert result.exit_code == 6  # drift found
    assert admin.mutating() == []
    rows = json.loads(result.stdout)["rows"]
    problems = {(r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows}
    assert ("bucket", f"{prefix}-private", "missing") in problems
    assert ("bucket", f"{prefix}-public", "drifted") in problems
    assert ("user_policy", f"{user}/provision-sandbox-{prefix}", "drifted") in problems
    assert ("access_key", user, "credential missing or unusable") in problems
    assert all(r["fix"].startswith(f"provision s3 --env sandbox --grant {prefix} --prefix {prefix} --readonly")
               for r in rows)
    assert {r["grant"] for r in rows} == {prefix}
    human = cli("status", "--env", "sandbox")
    assert "drift" in human.stderr and "missing" in human.stderr




def test_destroy_to_zero_also_removes_the_migrate_cache(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--full").exit_code == 0
    for side in ("public", "private"):
        folder = workdir / "data" / "storage" / f"{prefix}-{side}"
        folder.mkdir(parents=True)
        (folder / "a.bin").write_bytes(b"abc")
    assert cli("migrate", "--env", "sandbox", "--data-path", str(workdir / "data")).exit_code == 0
    cache = workdir / ".provision" / "sandbox.migrate-cache.sqlite"
    assert cache.exists()
    assert cli("destroy", "--env", "sandbox", "--yes", "--delete-data").exit_code == 0
    assert not cache.exists() and not (workdir / ".provision" / "sandbox.json").exists()
    assert (workdir / "data" / "storage" / f"{prefix}-public" / "a.bin").read_bytes() == b"abc"
