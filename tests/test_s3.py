"""`provision s3` against the enforcing moto server: what each issued key can and cannot do, idempotent re-runs,
IAM-role mode, regions, adopted buckets, dry-run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Admin, Cli, read_state


def allowed(call, **kwargs) -> bool:
    """True when the call succeeds, False on AccessDenied; anything else fails the test."""
    try:
        call(**kwargs)
        return True
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        assert code in ("AccessDenied", "403"), f"unexpected {code}"
        return False


def key_clients(admin: Admin, env: str = "sandbox"):
    auth = read_state(env)["grant"]["auth"]
    return admin.client("s3", auth["access_key"], auth["secret_key"]), auth


def test_readonly_key_reads_exactly_its_buckets(cli: Cli, admin: Admin, prefix: str) -> None:
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly")
    assert result.exit_code == 0, result.output
    buckets = [f"{prefix}-public", f"{prefix}-private"]
    other = f"{prefix}-other"
    admin.s3.create_bucket(Bucket=other)
    s3, _ = key_clients(admin)
    for bucket in buckets:
        admin.s3.put_object(Bucket=bucket, Key="img/a.jpg", Body=b"jpeg")
        assert allowed(s3.list_objects_v2, Bucket=bucket)
        assert allowed(s3.get_object, Bucket=bucket, Key="img/a.jpg")
        assert allowed(s3.get_bucket_location, Bucket=bucket)
        assert not allowed(s3.put_object, Bucket=bucket, Key="new.jpg", Body=b"x")
        assert not allowed(s3.delete_object, Bucket=bucket, Key="img/a.jpg")
        assert not allowed(s3.create_multipart_upload, Bucket=bucket, Key="big.bin")
        assert not allowed(s3.put_bucket_policy, Bucket=bucket, Policy='{"Version":"2012-10-17","Statement":[]}')
    assert not allowed(s3.list_buckets)
    admin.s3.put_object(Bucket=other, Key="secret.jpg", Body=b"x")
    assert not allowed(s3.list_objects_v2, Bucket=other)
    assert not allowed(s3.get_object, Bucket=other, Key="secret.jpg")
    assert not allowed(s3.put_object, Bucket=other, Key="x", Body=b"x")


def test_full_key_writes_its_buckets_only(cli: Cli, admin: Admin, prefix: str) -> None:
    result = cli("s3", f"{prefix}-data", "--env", "sandbox", "--full")
    assert result.exit_code == 0, result.output
    other = f"{prefix}-other"
    admin.s3.create_bucket(Bucket=other)
    s3, _ = key_clients(admin)
    bucket = f"{prefix}-data"
    assert allowed(s3.put_object, Bucket=bucket, Key="a.jpg", Body=b"x")
    assert allowed(s3.get_object, Bucket=bucket, Key="a.jpg")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big.bin")
    assert allowed(s3.abort_multipart_upload, Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"])
    assert allowed(s3.delete_object, Bucket=bucket, Key="a.jpg")
    assert not allowed(s3.put_object, Bucket=other, Key="a.jpg", Body=b"x")
    assert not allowed(s3.delete_object, Bucket=other, Key="a.jpg")
    assert not allowed(s3.list_buckets)


def test_buckets_get_secure_defaults(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    for bucket in (f"{prefix}-public", f"{prefix}-private"):
        pab = admin.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert pab == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                       "RestrictPublicBuckets": True}
        rules = admin.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        own = admin.s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        assert own == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_rerun_makes_no_mutating_call_and_no_new_key(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    first = read_state()["grant"]["auth"]["access_key"]
    for _ in range(3):
        admin.reset_log()
        result = cli("s3", "--env", "sandbox", "--prefix", prefix)
        assert result.exit_code == 0, result.output
        log = admin.log()
        assert log, "the re-run made no request at all: it cannot have checked anything"
        assert [e for e in log if e["mutating"]] == []
        assert "no changes" in result.stderr
    assert read_state()["grant"]["auth"]["access_key"] == first
    keys = admin.iam.list_access_keys(UserName=f"provision-{prefix}-readonly")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [first]


def test_state_file_is_private_and_records_resources(cli: Cli, prefix: str, workdir: Path) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    path = workdir / ".provision" / "sandbox.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    state = read_state()
    kinds = {(r["kind"], r["created"]) for r in state["resources"]}
    assert {("bucket", True), ("iam_user", True), ("user_policy", True), ("access_key", True)} <= kinds
    assert state["grant"]["buckets"] == [f"{prefix}-public", f"{prefix}-private"]


def test_iam_role_mode_has_no_keys(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    role = f"{prefix}-role"
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--iam-role", role)
    assert result.exit_code == 0, result.output
    got = admin.iam.get_role(RoleName=role)["Role"]
    assert got["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    policy = admin.iam.get_role_policy(RoleName=role, PolicyName="provision-buckets")["PolicyDocument"]
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{prefix}-public", f"arn:aws:s3:::{prefix}-private",
                         f"arn:aws:s3:::{prefix}-public/*", f"arn:aws:s3:::{prefix}-private/*"}
    profile = admin.iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [role]
    assert read_state()["grant"]["auth"] == {"kind": "role", "role_name": role}
    users = [u["UserName"] for u in admin.iam.list_users()["Users"]]
    assert not any(prefix in u for u in users)

    out = workdir / "sv"
    out.mkdir()
    assert cli("render-env", "--env", "sandbox", "--out", str(out)).exit_code == 0
    for name in (".env", "remote_links.yml", "docker-compose.override.yml"):
        text = (out / name).read_text()
        assert "ACCESS_KEY" not in text and "SECRET_KEY" not in text and "secret_key" not in text
        assert "access_key" not in text
    assert f"STORAGE_IAM_ROLE={role}" in (out / ".env").read_text()
    assert f"iam_role: {role}" in (out / "remote_links.yml").read_text()

    admin.reset_log()
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--iam-role", role).exit_code == 0
    assert admin.mutating() == []


def test_region_outside_us_east_1(cli: Cli, admin: Admin, prefix: str) -> None:
    result = cli("s3", f"{prefix}-eu", "--env", "sandbox", "--region", "eu-central-1")
    assert result.exit_code == 0, result.output
    assert admin.s3.get_bucket_location(Bucket=f"{prefix}-eu")["LocationConstraint"] == "eu-central-1"
    assert read_state()["grant"]["region"] == "eu-central-1"


def test_adopted_bucket_is_secured_and_reported(cli: Cli, admin: Admin, prefix: str) -> None:
    bucket = f"{prefix}-legacy"
    admin.s3.create_bucket(Bucket=bucket)
    result = cli("s3", bucket, "--env", "sandbox", "--json")
    assert result.exit_code == 0, result.output
    import json

    changes = json.loads(result.stdout)["changes"]
    mine = [(c["action"], c["detail"]) for c in changes if c["name"] == bucket]
    assert ("adopt", "exists; adopted (destroy never deletes it)") in mine
    assert ("update", "public access block: all four on") in mine
    assert ("update", "default encryption: SSE-S3 (AES256)") in mine
    assert ("update", "object ownership: BucketOwnerEnforced (ACLs off)") in mine
    assert [r["created"] for r in read_state()["resources"] if r["name"] == bucket] == [False]
    assert admin.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]


def test_dry_run_changes_nothing(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    admin.reset_log()
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--dry-run")
    assert result.exit_code == 0, result.output
    assert admin.mutating() == []
    assert "would" in result.stderr or "plan" in result.stderr
    assert "create" in result.stderr and f"{prefix}-public" in result.stderr
    assert not (workdir / ".provision" / "sandbox.json").exists()
    with pytest.raises(ClientError):
        admin.s3.head_bucket(Bucket=f"{prefix}-public")


def test_changed_access_updates_policy_in_place(cli: Cli, admin: Admin, prefix: str) -> None:
    bucket = f"{prefix}-x"
    assert cli("s3", bucket, "--env", "sandbox", "--user", f"{prefix}-u").exit_code == 0
    key = read_state()["grant"]["auth"]["access_key"]
    admin.reset_log()
    result = cli("s3", bucket, "--env", "sandbox", "--user", f"{prefix}-u", "--full")
    assert result.exit_code == 0, result.output
    assert [e["action"] for e in admin.mutating() if e["service"] == "iam"] == ["PutUserPolicy"]
    assert "verify: all" in result.stderr  # a changed policy is probed before the command succeeds
    assert read_state()["grant"]["auth"]["access_key"] == key
    s3, _ = key_clients(admin)
    assert allowed(s3.put_object, Bucket=bucket, Key="now-allowed", Body=b"x")


def test_secret_is_masked_unless_asked(cli: Cli, prefix: str) -> None:
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--json")
    assert result.exit_code == 0
    secret = read_state()["grant"]["auth"]["secret_key"]
    assert secret not in result.stdout and secret not in result.stderr
    import json

    assert json.loads(result.stdout)["grant"]["auth"]["secret_key"].startswith("****")
    shown = cli("s3", "--env", "sandbox", "--prefix", prefix, "--json", "--show-secrets")
    assert json.loads(shown.stdout)["grant"]["auth"]["secret_key"] == secret


def test_verify_passes_for_issued_key(cli: Cli, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    result = cli("verify", "--env", "sandbox", "--json")
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)["rows"]
    assert {(r["operation"], r["expected"]) for r in rows} >= {("PutObject", "deny"), ("GetObject", "allow")}
    assert all(r["ok"] for r in rows)


def test_verify_catches_an_over_broad_key(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    admin.iam.put_user_policy(UserName=f"provision-{prefix}-readonly", PolicyName="too-broad", PolicyDocument=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}]}'))
    result = cli("verify", "--env", "sandbox")
    assert result.exit_code == 5
    assert "PutObject" in result.stderr
