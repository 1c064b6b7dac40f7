"""`provision s3` against the enforcing moto server: what each issued key can and cannot do, idempotent re-runs,
IAM-role mode, regions, adopted buckets, dry-run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Admin, Cli, read_grant, read_state


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
    auth = read_grant(env)["grant"]["auth"]
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
    first = read_grant()["grant"]["auth"]["access_key"]
    for _ in range(3):
        admin.reset_log()
        result = cli("s3", "--env", "sandbox", "--prefix", prefix)
        assert result.exit_code == 0, result.output
        log = admin.log()
        assert log, "the re-run made no request at all: it cannot have checked anything"
        assert [e for e in log if e["mutating"]] == []
        assert "no changes" in result.stderr
    assert read_grant()["grant"]["auth"]["access_key"] == first
    keys = admin.iam.list_access_keys(UserName=f"provision-{prefix}-readonly")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [first]


def test_state_file_is_private_and_records_resources(cli: Cli, prefix: str, workdir: Path) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    path = workdir / ".provision" / "sandbox.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    state = read_grant()
    kinds = {(r["kind"], r["created"]) for r in state["resources"]}
    assert {("bucket", True), ("iam_user", True), ("user_policy", True), ("access_key", True)} <= kinds
    assert state["grant"]["buckets"] == [f"{prefix}-public", f"{prefix}-private"]


def test_iam_role_mode_has_no_keys(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    role = f"{prefix}-role"
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--iam-role", role)
    assert result.exit_code == 0, result.output
    got = admin.iam.get_role(RoleName=role)["Role"]
    assert got["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    policy = admin.iam.get_role_policy(RoleName=role, PolicyName=f"provision-sandbox-{prefix}")["PolicyDocument"]
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{prefix}-public", f"arn:aws:s3:::{prefix}-private",
                         f"arn:aws:s3:::{prefix}-public/*", f"arn:aws:s3:::{prefix}-private/*"}
    profile = admin.iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [role]
    assert read_grant()["grant"]["auth"] == {"kind": "role", "role_name": role}
    users = [u["UserName"] for u in admin.iam.list_users()["Users"]]
    assert not any(prefix in u for u in users)

    # a full role grant is the instance storage (.env), the read-only one a Links connection named after its grant
    storage_role = f"{prefix}-storage"
    full = cli("s3", "--env", "sandbox", "--prefix", f"{prefix}s", "--iam-role", storage_role, "--full")
    assert full.exit_code == 0, full.output
    out = workdir / "sv"
    out.mkdir()
    assert cli("render-env", "--env", "sandbox", "--out", str(out)).exit_code == 0
    for name in (".env", "remote_links.yml", "docker-compose.override.yml"):
        text = (out / name).read_text()
        assert "ACCESS_KEY" not in text and "SECRET_KEY" not in text and "secret_key" not in text
        assert "access_key" not in text
    assert f"STORAGE_IAM_ROLE={storage_role}" in (out / ".env").read_text()
    assert f"{prefix}:\n" in (out / "remote_links.yml").read_text()
    assert f"iam_role: {role}" in (out / "remote_links.yml").read_text()

    admin.reset_log()
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--iam-role", role).exit_code == 0
    assert admin.mutating() == []


def test_region_outside_us_east_1(cli: Cli, admin: Admin, prefix: str) -> None:
    result = cli("s3", f"{prefix}-eu", "--env", "sandbox", "--region", "eu-central-1")
    assert result.exit_code == 0, result.output
    assert admin.s3.get_bucket_location(Bucket=f"{prefix}-eu")["LocationConstraint"] == "eu-central-1"
    assert read_grant()["grant"]["region"] == "eu-central-1"


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
    assert [r["created"] for r in read_grant()["resources"] if r["name"] == bucket] == [False]
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
    key = read_grant()["grant"]["auth"]["access_key"]
    admin.reset_log()
    result = cli("s3", bucket, "--env", "sandbox", "--user", f"{prefix}-u", "--full", "--yes")  # widens: --yes
    assert result.exit_code == 0, result.output
    assert [e["action"] for e in admin.mutating() if e["service"] == "iam"] == ["PutUserPolicy"]
    assert "verify: all" in result.stderr  # a changed policy is probed before the command succeeds
    assert read_grant()["grant"]["auth"]["access_key"] == key
    s3, _ = key_clients(admin)
    assert allowed(s3.put_object, Bucket=bucket, Key="now-allowed", Body=b"x")


def test_secret_is_masked_unless_asked(cli: Cli, prefix: str) -> None:
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--json")
    assert result.exit_code == 0
    secret = read_grant()["grant"]["auth"]["secret_key"]
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


# ---- unit tests of the provider package (no server) ----------------------------------------------------------------

def test_probe_table_calls_the_keys_client_with_each_rows_bucket_and_key() -> None:
    """The rows of the verify probe table are asserted exactly in tests/test_verify_probes.py; here every probe of
    a full grant's table is called: each makes its row's request with the key's client only, on the bucket and key
    its target names, and the multipart probe's clean-up aborts the upload with the admin's client."""
    import re
    from unittest.mock import MagicMock

    from provision.providers.aws.verify import probe_table

    user, admin = MagicMock(), MagicMock()
    table = probe_table(user, admin, ["b1"], True, "k", "other")
    assert len(table) == 19
    for probe in table:
        user.reset_mock()
        probe.call()
        names = [c[0] for c in user.method_calls]
        assert re.sub(r"(?<!^)(?=[A-Z])", "_", probe.operation).lower() in names, (probe, names)
        bucket, _, key = probe.target.split(" ")[0].partition("/")
        if probe.operation == "ListBuckets":
            assert user.method_calls[0].kwargs == {}
        else:
            assert all(c.kwargs["Bucket"] == bucket for c in user.method_calls), (probe, user.method_calls)
            if key:
                assert all(c.kwargs["Key"] == key for c in user.method_calls), (probe, user.method_calls)
    assert admin.method_calls == []  # building and calling the probes never uses the admin...
    multipart = next(p for p in table if p.operation == "CreateMultipartUpload")
    assert multipart.then is not None and all(p.then is None for p in table if p is not multipart)
    multipart.then({"UploadId": "u1"})  # ...except to abort the upload the multipart probe started
    assert [(c[0], c.kwargs) for c in admin.method_calls] == [
        ("abort_multipart_upload", {"Bucket": "b1", "Key": "k.m", "UploadId": "u1"})]


def test_probe_outcome_classifies_s3_answers_only() -> None:
    from provision.providers.aws.verify import outcome

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetObject")

    assert outcome(error("AccessDenied")) == "deny"
    assert outcome(error("403")) == "deny"
    assert outcome(error("NoSuchKey")) == "error: NoSuchKey"
    assert outcome(RuntimeError("not S3's answer")) is None


def test_options_identity_and_validation() -> None:
    from pydantic import ValidationError

    from provision.errors import BadInput
    from provision.models import Access
    from provision.providers.aws.options import AwsOptions

    assert AwsOptions().identity(["acme-public"], "acme", Access.readonly) == ("user", "provision-acme-readonly")
    assert AwsOptions().identity(["b" * 60], None, Access.full) == ("user", f"provision-{'b' * 45}-full")
    assert AwsOptions(user="alice").identity(["b"], None, Access.full) == ("user", "alice")
    assert AwsOptions(iam_role="r1").identity(["b"], None, Access.full) == ("role", "r1")
    with pytest.raises(BadInput, match="--iam-role and --user are mutually exclusive"):
        AwsOptions(iam_role="r1", user="alice").identity(["b"], None, Access.full)
    with pytest.raises(BadInput, match="invalid --user 'a b'"):
        AwsOptions(user="a b").identity(["b"], None, Access.full)
    with pytest.raises(BadInput, match="invalid --iam-role"):
        AwsOptions(iam_role="r" * 65).identity(["b"], None, Access.full)
    with pytest.raises(ValidationError, match="must start with http:// or https://"):
        AwsOptions(endpoint_url="localhost:9000")
    with pytest.raises(ValidationError):
        AwsOptions(account="not an S3 option")  # type: ignore[call-arg]


def test_sdk_attempts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset: botocore's standard mode with 3 retries (4 attempts), as before; ``PROVISION_SDK_ATTEMPTS=N``: N
    attempts in all, on every client of the seam; a bad value is one-line bad input."""
    from provision.errors import BadInput
    from provision.profiles import Profile
    from provision.providers.aws import AwsProvider

    def attempts() -> int:
        provider = AwsProvider(Profile(provider="s3", prefix="acme", endpoint_url="http://127.0.0.1:9",
                                       region="eu-west-1"))
        counts = {c.meta.config.retries["total_max_attempts"]
                  for c in (provider.client("s3"), provider.client("iam"), provider.sdk.data_client(None))}
        assert len(counts) == 1, counts
        return counts.pop()

    monkeypatch.delenv("PROVISION_SDK_ATTEMPTS", raising=False)
    assert attempts() == 4
    monkeypatch.setenv("PROVISION_SDK_ATTEMPTS", "2")
    assert attempts() == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("PROVISION_SDK_ATTEMPTS", bad)
        with pytest.raises(BadInput, match="PROVISION_SDK_ATTEMPTS"):
            attempts()


def test_no_credentials_and_unreachable_endpoint_are_one_line(cli: Cli, prefix: str, workdir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials anywhere: exit 3 "no AWS credentials found" with the hint; an endpoint nobody listens on:
    exit 3 "AWS could not be reached"; no traceback, nothing in state."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("PROVISION_SDK_ATTEMPTS", "1")
    args = ("s3", "--env", "nocreds", "--prefix", prefix, "--endpoint-url", "http://127.0.0.1:9",
            "--region", "us-east-1")
    result = cli(*args)
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines() == [
        "error: no AWS credentials found — configure the AWS credential chain (aws configure, AWS_PROFILE, ...) "
        "or try --env sandbox"], result.stderr

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)
    result = cli(*args)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: AWS could not be reached: "), lines
    assert "check the endpoint and the network" in lines[0] and "Traceback" not in result.output
    state = workdir / ".provision" / "nocreds.json"
    assert not state.exists() or all(g["resources"] == [] for g in read_state("nocreds")["grants"].values())


def test_another_provider_is_another_grant_of_the_env(cli: Cli, admin: Admin, prefix: str) -> None:
    """One env is one platform install: a GCS grant next to an S3 one is a second grant (no "already holds a s3
    grant" refusal), each reported by name; a grant name taken by another provider is refused (exit 2)."""
    s3 = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--json")
    assert s3.exit_code == 0, s3.output
    assert json.loads(s3.stdout)["grant_name"] == prefix
    gcs = cli("gcs", "--env", "sandbox", "--prefix", f"{prefix}g", "--keyless", "--grant", "datasets", "--json")
    assert gcs.exit_code == 0, gcs.output
    assert json.loads(gcs.stdout)["grant_name"] == "datasets"
    grants = read_state()["grants"]
    assert {name: g["provider"] for name, g in grants.items()} == {prefix: "s3", "datasets": "gcs"}
    taken = cli("gcs", "--env", "sandbox", "--prefix", f"{prefix}h", "--keyless", "--grant", prefix)
    assert taken.exit_code == 2 and len(taken.stderr.strip().splitlines()) == 1
    assert f"grant '{prefix}'" in taken.stderr and "s3 grant" in taken.stderr and "--grant" in taken.stderr
    verified = json.loads(cli("verify", "--env", "sandbox", "--json").stdout)
    assert [(g["name"], g["skipped"] is None) for g in verified["grants"]] == [(prefix, True), ("datasets", False)]
    assert verified["rows"] == verified["grants"][0]["rows"] and verified["rows"]
    gone = cli("destroy", "--env", "sandbox", "--grant", "datasets", "--yes", "--json")
    assert gone.exit_code == 0, gone.output
    assert json.loads(gone.stdout)["grants"] == ["datasets"]
    assert list(read_state()["grants"]) == [prefix]
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
