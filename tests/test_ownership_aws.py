"""Nothing lost, leaked or orphaned on AWS: owner marks keep two environments from taking each other's resources
(and hand a shared one over on destroy), lost answers and kills never leave an untracked key or an orphan, a
bucket in another region is refused, and a policy under its old name is converged to the new one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from provision import sandbox
from tests.conftest import Admin, Cli
from tests.kills import run_and_kill, state_files

SANDBOX_ENVS = ("a", "b")


@pytest.fixture(autouse=True)
def sandbox_envs(workdir: Path, sandbox_info: sandbox.SandboxInfo) -> None:
    """Profiles ``a`` and ``b``: two environments on the one sandbox."""
    for env in SANDBOX_ENVS:
        (workdir / "envs" / f"{env}.yaml").write_text("sandbox: true\n")


def grant_state(env: str = "sandbox") -> dict[str, Any]:
    """The single grant record of ``env``'s state file (version 2)."""
    data = json.loads((Path(os.environ["PROVISION_STATE_DIR"]) / f"{env}.json").read_text())
    (record,) = data["grants"].values()
    return dict(record, state_id=data["state_id"])


def s3_full(cli: Cli, env: str, prefix: str, *extra: str) -> Any:
    return cli("s3", "--env", env, "--prefix", prefix, "--full", *extra)


def live(admin: Admin, prefix: str) -> list[str]:
    """Every bucket, IAM user, access key, inline user policy and role the emulator holds for ``prefix``."""
    iam, s3 = admin.iam, admin.s3
    users = [u["UserName"] for u in iam.list_users()["Users"] if prefix in u["UserName"]]
    return sorted([f"bucket {b['Name']}" for b in s3.list_buckets()["Buckets"] if prefix in b["Name"]]
                  + [f"user {u}" for u in users]
                  + [f"key {k['AccessKeyId']}" for u in users
                     for k in iam.list_access_keys(UserName=u)["AccessKeyMetadata"]]
                  + [f"policy {u}/{p}" for u in users for p in iam.list_user_policies(UserName=u)["PolicyNames"]]
                  + [f"role {r['RoleName']}" for r in iam.list_roles()["Roles"] if prefix in r["RoleName"]])


def untracked_keys(admin: Admin, user: str, env: str = "sandbox") -> list[str]:
    """Live keys of ``user`` that the state of ``env`` does not record."""
    known = {r["name"] for r in grant_state(env)["resources"] if r["kind"] == "access_key"}
    return [k["AccessKeyId"] for k in admin.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            if k["AccessKeyId"] not in known]


# ---- two environments, one prefix ------------------------------------------------------------------------------
@pytest.mark.parametrize("first", ["a", "b"])
def test_second_env_adopts_only_with_adopt_and_destroy_spares_the_other(cli: Cli, admin: Admin, prefix: str,
                                                                       first: str) -> None:
    assert s3_full(cli, "a", prefix).exit_code == 0
    user = f"provision-{prefix}-full"
    marked = {t["Key"]: t["Value"] for t in admin.s3.get_bucket_tagging(Bucket=f"{prefix}-public")["TagSet"]}
    assert marked == {"provision:env": "a", "provision:grant": prefix, "provision:state": grant_state("a")["state_id"]}
    tags = {t["Key"]: t["Value"] for t in admin.iam.list_user_tags(UserName=user)["Tags"]}
    assert tags["provision:env"] == "a" and tags["provision:grant"] == prefix

    admin.reset_log()
    refused = s3_full(cli, "b", prefix)
    assert refused.exit_code == 2, refused.output
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "env 'a'" in refused.stderr and f"grant {prefix!r}" in refused.stderr and "--adopt" in refused.stderr
    assert admin.mutating() == []

    adopted = s3_full(cli, "b", prefix, "--adopt")
    assert adopted.exit_code == 0, adopted.output
    assert sorted(admin.iam.list_user_policies(UserName=user)["PolicyNames"]) == [
        f"provision-a-{prefix}", f"provision-b-{prefix}"]
    assert {(r["kind"], r["created"]) for r in grant_state("b")["resources"]} == {
        ("bucket", False), ("iam_user", False), ("user_policy", True), ("access_key", True)}
    for env in SANDBOX_ENVS:
        checked = cli("verify", "--env", env)
        assert checked.exit_code == 0, (env, checked.output)

    other = "b" if first == "a" else "a"
    done = cli("destroy", "--env", first, "--yes")
    assert done.exit_code == 0, done.output
    check = cli("verify", "--env", other)
    assert check.exit_code == 0, check.output
    assert admin.iam.list_user_policies(UserName=user)["PolicyNames"] == [f"provision-{other}-{prefix}"]
    assert untracked_keys(admin, user, other) == []
    assert cli("s3", "--env", other, "--prefix", prefix, "--full").exit_code == 0  # still converges
    assert cli("destroy", "--env", other, "--yes").exit_code == 0
    assert live(admin, prefix) == []


def test_adopted_roles_policy_is_not_recorded_as_created(cli: Cli, admin: Admin, prefix: str) -> None:
    role = f"{prefix}-role"
    admin.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    mine = f"provision-sandbox-{prefix}"
    admin.iam.put_role_policy(RoleName=role, PolicyName=mine, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--iam-role", role)
    assert result.exit_code == 0, result.output
    recorded = {(r["kind"], r["name"]): r["created"] for r in grant_state()["resources"]}
    assert recorded[("iam_role", role)] is False and recorded[("role_policy", mine)] is False
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert admin.iam.list_role_policies(RoleName=role)["PolicyNames"] == [mine]
    admin.iam.delete_role_policy(RoleName=role, PolicyName=mine)
    admin.iam.delete_role(RoleName=role)


# ---- lost answers and kills ------------------------------------------------------------------------------------
def test_lost_answer_at_every_mutating_step_leaves_no_untracked_key(cli: Cli, admin: Admin, prefix: str) -> None:
    admin.reset_log()
    assert s3_full(cli, "sandbox", f"{prefix}c", "--no-verify").exit_code == 0
    steps = [e["action"] or e["method"] for e in admin.mutating()]
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert len(steps) >= 10, steps
    untracked = 0
    for k in range(1, len(steps) + 1):
        p = f"{prefix}l{k}"
        user = f"provision-{p}-full"
        sandbox.control(admin.info.s3.endpoint_url, "faults", {"fail_mutating_at": k, "count": 1, "after": True})
        try:
            first = s3_full(cli, "sandbox", p, "--no-verify", "--json")
        finally:
            sandbox.control(admin.info.s3.endpoint_url, "faults", {})
        assert first.exit_code in (0, 3, 4), (k, steps[k - 1], first.output)
        if steps[k - 1] == "CreateAccessKey":  # the SDK's retry made a second key; the first one is deleted
            assert first.exit_code == 0, first.output
            assert [c["kind"] for c in json.loads(first.stdout)["changes"] if c["action"] == "delete"
                    and "untracked key from an interrupted run" in c["detail"]] == ["access_key"], first.stdout
        again = s3_full(cli, "sandbox", p)
        assert again.exit_code == 0, (k, steps[k - 1], again.output)
        untracked += len(untracked_keys(admin, user))
        assert untracked_keys(admin, user) == [], (k, steps[k - 1])
        assert {r["kind"] for r in grant_state()["resources"]} == {"bucket", "iam_user", "user_policy", "access_key"}
        assert all(r["created"] for r in grant_state()["resources"]), (k, steps[k - 1], grant_state())
        rotated = s3_full(cli, "sandbox", p, "--rotate")
        assert rotated.exit_code == 0, (k, steps[k - 1], rotated.output)
        assert untracked_keys(admin, user) == [] and len(admin.iam.list_access_keys(UserName=user)[
            "AccessKeyMetadata"]) == 1, k
        done = cli("destroy", "--env", "sandbox", "--yes")
        assert done.exit_code == 0, (k, done.output)
        assert live(admin, p) == [], (k, steps[k - 1])
    print(f"lost answers tried: {len(steps)} ({', '.join(steps)}); untracked keys after re-run: {untracked}")


def test_kill_at_any_point_then_rerun_and_destroy_leaves_nothing(cli: Cli, admin: Admin, prefix: str) -> None:
    points, orphans, blocked = [], [], []
    before = {b["Name"] for b in admin.s3.list_buckets()["Buckets"]}
    k = 1
    while True:
        p = f"{prefix}k{k}"
        seen = run_and_kill(admin, k, "s3", "--env", "sandbox", "--prefix", p, "--full")
        if seen is None:  # the run finished before its k-th mutating request: every point was tried
            done = cli("destroy", "--env", "sandbox", "--yes")
            assert done.exit_code == 0, done.output
            break
        points.append(seen)
        again = s3_full(cli, "sandbox", p)
        assert again.exit_code == 0, (k, again.output)
        assert untracked_keys(admin, f"provision-{p}-full") == [], k
        done = cli("destroy", "--env", "sandbox", "--yes")
        if done.exit_code == 2 and "--delete-data" in done.stderr:
            blocked.append((k, sorted(o["Key"] for o in admin.s3.list_objects_v2(
                Bucket=f"{p}-public").get("Contents", []) + admin.s3.list_objects_v2(
                Bucket=f"{p}-private").get("Contents", []))))
            done = cli("destroy", "--env", "sandbox", "--yes", "--delete-data")
        assert done.exit_code == 0, (k, done.output)
        assert state_files() == [], k
        orphans += live(admin, p)
        k += 1
    strays = [b["Name"] for b in admin.s3.list_buckets()["Buckets"] if b["Name"].startswith("provision-verify-")
              and b["Name"] not in before]
    print(f"kill points tried: {len(points)} (mutating requests seen: {points}); orphans: {orphans}; "
          f"destroy blocked by leftover objects: {blocked}; verify's stray 'another bucket's: {strays}")
    assert len(points) >= 20, points
    assert orphans == []
    # a killed verify's temporary bucket is marked as verify's: the next verify removes it once stale
    from datetime import datetime, timedelta, timezone

    from provision.providers.aws.verify import leftovers
    assert set(strays) <= set(leftovers(admin.s3, datetime.now(timezone.utc) + timedelta(seconds=1))), strays
    assert blocked == [], blocked


# ---- region, old policy name, untracked key --------------------------------------------------------------------
def test_bucket_in_another_region_is_refused(cli: Cli, admin: Admin, prefix: str) -> None:
    admin.s3.create_bucket(Bucket=f"{prefix}-public", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    admin.reset_log()
    refused = cli("s3", "--env", "sandbox", "--prefix", prefix)
    assert refused.exit_code == 2, refused.output
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "eu-west-1" in refused.stderr and admin.info.s3.region in refused.stderr
    assert admin.mutating() == []
    admin.s3.delete_bucket(Bucket=f"{prefix}-public")

    p = f"{prefix}r"
    assert cli("s3", "--env", "sandbox", "--prefix", p).exit_code == 0
    admin.reset_log()
    moved = cli("s3", "--env", "sandbox", "--prefix", p, "--region", "eu-west-1")
    assert moved.exit_code == 2, moved.output
    assert "eu-west-1" in moved.stderr and admin.info.s3.region in moved.stderr
    assert admin.mutating() == []
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert live(admin, p) == []


def test_old_policy_name_is_converged_to_the_new_one(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    user, new = f"provision-{prefix}-readonly", f"provision-sandbox-{prefix}"
    document = admin.iam.get_user_policy(UserName=user, PolicyName=new)["PolicyDocument"]
    admin.iam.put_user_policy(UserName=user, PolicyName="provision-buckets", PolicyDocument=json.dumps(document))
    admin.iam.delete_user_policy(UserName=user, PolicyName=new)
    path = Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.json"
    path.write_text(path.read_text().replace(f'"{new}"', '"provision-buckets"'))  # a state from before the rename

    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--json")
    assert result.exit_code == 0, result.output
    changes = {(c["action"], c["kind"], c["name"]) for c in json.loads(result.stdout)["changes"]}
    assert {("create", "user_policy", f"{user}/{new}"), ("delete", "user_policy", f"{user}/provision-buckets")} \
        <= changes
    assert admin.iam.list_user_policies(UserName=user)["PolicyNames"] == [new]
    assert [r["name"] for r in grant_state()["resources"] if r["kind"] == "user_policy"] == [new]
    assert cli("verify", "--env", "sandbox").exit_code == 0
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert live(admin, prefix) == []


def test_status_reports_an_untracked_key_of_a_created_user(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    user = f"provision-{prefix}-readonly"
    stray = admin.iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    admin.reset_log()
    rows = json.loads(cli("status", "--env", "sandbox", "--json").stdout)["rows"]
    assert admin.mutating() == []
    assert ("access_key", stray, "extra") in {(r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows}
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    assert untracked_keys(admin, user) == []
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert live(admin, prefix) == []
