"""The ``minio`` credential issuer of `provision s3` against the sandbox's MinIO (`provision.sandbox_minio`, served
as the sandbox's ``minio`` service): keys allowed and denied by their grant, re-runs without a mutating call,
rotation, destroy to zero (checked with ``MinioAdmin``), a fault at every mutating admin call converging on re-run,
issuer detection, key expiry, admin refusals, and S3 settings a server does not implement."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException

from provision import sandbox
from provision.ledger import Plan
from provision.providers.aws import buckets as s3_buckets
from provision.providers.aws.minio import detect_issuer
from provision.state import GrantState
from tests.conftest import Cli, read_state


class Minio:
    """The sandbox's MinIO endpoint: root admin client, S3 clients, its request log and faults."""

    def __init__(self, info: sandbox.SandboxInfo) -> None:
        assert info.minio is not None
        self.endpoint = info.minio
        self.url = info.minio.endpoint_url
        self.admin = MinioAdmin(endpoint=urlparse(self.url).netloc,
                                credentials=StaticProvider(info.minio.access_key, info.minio.secret_key),
                                secure=False)

    def s3(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=access_key or self.endpoint.access_key,
                            aws_secret_access_key=secret_key or self.endpoint.secret_key,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def reset_log(self) -> None:
        sandbox.control(self.url, "requests/reset")

    def mutating(self) -> list[dict[str, Any]]:
        return [e for e in sandbox.request_log(self.url) if e["mutating"]]

    def fault(self, payload: dict[str, Any]) -> None:
        sandbox.control(self.url, "faults", payload)

    def gone(self, call: Any, *args: Any) -> bool:
        try:
            call(*args)
        except MinioAdminException as exc:
            return exc._code == "404"
        return False


@pytest.fixture
def minio(sandbox_info: sandbox.SandboxInfo) -> Minio:
    return Minio(sandbox_info)


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _key(env: str, grant: str) -> tuple[str, str]:
    auth = read_state(env)["grants"][grant]["grant"]["auth"]
    return auth["access_key"], auth["secret_key"]


def _other_bucket(minio: Minio) -> str:
    name = f"other-{uuid.uuid4().hex[:10]}"
    minio.s3().create_bucket(Bucket=name)
    minio.s3().put_object(Bucket=name, Key="a.txt", Body=b"theirs")
    return name


def _expect(s3: Any, buckets: list[str], other: str, full: bool) -> None:
    """list/get on the buckets allowed; put/delete allowed only for ``full``; another bucket denied."""
    for bucket in buckets:
        s3.list_objects_v2(Bucket=bucket)
        assert s3.get_object(Bucket=bucket, Key="seed.txt")["Body"].read() == b"seed"
        if full:
            s3.put_object(Bucket=bucket, Key="new.txt", Body=b"x")
            s3.delete_object(Bucket=bucket, Key="new.txt")
        else:
            for call in (lambda b=bucket: s3.put_object(Bucket=b, Key="new.txt", Body=b"x"),
                         lambda b=bucket: s3.delete_object(Bucket=b, Key="seed.txt")):
                with pytest.raises(ClientError) as exc:
                    call()
                assert _code(exc) == "AccessDenied"
    for call in (lambda: s3.list_objects_v2(Bucket=other), lambda: s3.get_object(Bucket=other, Key="a.txt"),
                 lambda: s3.put_object(Bucket=other, Key="b.txt", Body=b"x")):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"


def test_full_and_readonly_keys_and_rerun_without_mutating_calls(cli: Cli, minio: Minio, prefix: str) -> None:
    _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", "--prefix", prefix, "--full"))
    buckets = [f"{prefix}-public", f"{prefix}-private"]
    for bucket in buckets:
        minio.s3().put_object(Bucket=bucket, Key="seed.txt", Body=b"seed")
    _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", "--grant", "ro", buckets[0], "--readonly"))
    state = read_state()
    kinds = {(r["kind"], r["created"]) for r in state["grants"][prefix]["resources"]}
    assert {("minio_policy", True), ("minio_user", True), ("minio_policy_attachment", True),
            ("minio_access_key", True), ("bucket", True)} == kinds
    assert {r["kind"] for r in state["grants"]["ro"]["resources"]} >= {"minio_user", "bucket"}
    assert [r["created"] for r in state["grants"]["ro"]["resources"] if r["kind"] == "bucket"] == [False]
    grant = state["grants"][prefix]["grant"]
    assert grant["endpoint_url"] == minio.url and grant["storage_provider"] == "minio"

    policy = json.loads(minio.admin.policy_info(f"provision-sandbox-{prefix}"))
    assert {s["Sid"] for s in policy["Statement"]} == {"ProvisionBuckets", "ProvisionObjects"}
    info = json.loads(minio.admin.user_info(f"provision-sandbox-{prefix}"))
    assert info["policyName"] == f"provision-sandbox-{prefix}"

    other = _other_bucket(minio)
    _expect(minio.s3(*_key("sandbox", prefix)), buckets, other, full=True)
    _expect(minio.s3(*_key("sandbox", "ro")), buckets[:1], other, full=False)
    with pytest.raises(ClientError) as exc:  # the read-only grant is on the public bucket only
        minio.s3(*_key("sandbox", "ro")).list_objects_v2(Bucket=buckets[1])
    assert _code(exc) == "AccessDenied"

    verify = cli("verify", "--env", "sandbox", "--grant", "ro")
    assert verify.exit_code == 0, verify.output

    minio.reset_log()
    for args in (["--prefix", prefix, "--full"], ["--grant", "ro", buckets[0], "--readonly"]):
        again = _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", *args))
        assert "no changes" in again.output
    assert minio.mutating() == []
    status = _ok(cli("status", "--env", "sandbox"))
    assert "in sync" in status.output
    assert minio.mutating() == []


def test_rotate_then_destroy_to_zero(cli: Cli, minio: Minio, prefix: str) -> None:
    bucket = f"{prefix}-data"
    _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", bucket, "--full"))
    old = _key("sandbox", bucket)
    user = policy = f"provision-sandbox-{bucket}"
    rotated = _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", bucket, "--full", "--rotate"))
    assert "rotation: new access key" in rotated.output
    new = _key("sandbox", bucket)
    assert new[0] != old[0]
    minio.s3(*new).put_object(Bucket=bucket, Key="k", Body=b"v")
    with pytest.raises(ClientError) as exc:
        minio.s3(*old).list_objects_v2(Bucket=bucket)
    assert _code(exc) == "InvalidAccessKeyId"
    keys = [r["name"] for r in read_state()["grants"][bucket]["resources"] if r["kind"] == "minio_access_key"]
    assert keys == [new[0]]

    _ok(cli("destroy", "--env", "sandbox", "--yes", "--delete-data"))
    assert minio.gone(minio.admin.user_info, user)
    assert minio.gone(minio.admin.policy_info, policy)
    assert minio.gone(minio.admin.get_service_account, new[0])
    assert policy not in json.loads(minio.admin.policy_list())
    assert user not in json.loads(minio.admin.user_list())
    with pytest.raises(ClientError) as exc:
        minio.s3().head_bucket(Bucket=bucket)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    path = Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.json"
    assert not path.exists() or not read_state()["grants"]


def test_a_fault_at_every_mutating_admin_call_converges(cli: Cli, minio: Minio) -> None:
    def run(bucket: str) -> Any:
        return cli("s3", "--env", "sandbox", "--issuer", "minio", bucket, "--full", "--grant", bucket)

    first = f"f{uuid.uuid4().hex[:10]}"
    minio.reset_log()
    _ok(run(first))
    mutating = minio.mutating()
    admin_calls = [i for i, e in enumerate(mutating) if e["path"].startswith("/minio/admin/")]
    commands = [mutating[i]["path"].rsplit("/v3/", 1)[1] for i in admin_calls]
    assert commands == ["add-canned-policy", "add-user", "idp/builtin/policy/attach", "add-service-account"]
    for index, command in zip(admin_calls, commands, strict=True):
        bucket = f"f{uuid.uuid4().hex[:10]}"
        minio.fault({"fail_mutating_at": index + 1, "count": 20})
        try:
            failed = run(bucket)
        finally:
            minio.fault({})
        assert failed.exit_code in (3, 4), (command, failed.output)
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert "Traceback" not in failed.output
        _ok(run(bucket))
        minio.reset_log()
        assert "no changes" in _ok(run(bucket)).output, command
        assert minio.mutating() == [], command
        access_key, secret_key = _key("sandbox", bucket)
        minio.s3(access_key, secret_key).put_object(Bucket=bucket, Key="k", Body=b"v")
    _ok(cli("destroy", "--env", "sandbox", "--yes", "--delete-data"))
    users = json.loads(minio.admin.user_list())
    assert not [u for u in users if u.startswith("provision-sandbox-f")]


def test_issuer_detection_and_override(cli: Cli, minio: Minio, sandbox_info: sandbox.SandboxInfo) -> None:
    s3 = minio.s3()
    assert detect_issuer(s3) == "minio"
    moto = boto3.client("s3", endpoint_url=sandbox_info.s3.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=sandbox_info.s3.access_key,
                        aws_secret_access_key=sandbox_info.s3.secret_key)
    assert detect_issuer(moto) == "aws-iam"

    def kinds(grant: str) -> set[str]:
        return {r["kind"] for r in read_state()["grants"][grant]["resources"]}

    name = f"d{uuid.uuid4().hex[:10]}"
    _ok(cli("s3", "--env", "sandbox", "--endpoint-url", minio.url, "--grant", "detected", name))
    assert "minio_user" in kinds("detected") and "iam_user" not in kinds("detected")
    _ok(cli("s3", "--env", "sandbox", "--grant", "moto", name))
    assert "iam_user" in kinds("moto") and "minio_user" not in kinds("moto")
    # --issuer wins over detection: IAM's API through the MinIO endpoint (the sandbox forwards it to moto)
    _ok(cli("s3", "--env", "sandbox", "--endpoint-url", minio.url, "--issuer", "aws-iam", "--grant", "forced",
            "--user", f"forced-{name}", name))
    assert "iam_user" in kinds("forced") and "minio_user" not in kinds("forced")
    # and --issuer minio on a server that is not MinIO fails in one line, before anything is created
    wrong = cli("s3", "--env", "sandbox", "--endpoint-url", sandbox_info.s3.endpoint_url, "--issuer", "minio",
                "--grant", "wrong", f"w{name}")
    assert wrong.exit_code == 3, wrong.output
    assert "does not serve MinIO's admin API" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    with pytest.raises(ClientError):
        moto.head_bucket(Bucket=f"w{name}")


@pytest.mark.parametrize("args, message", [
    (["--issuer", "minio", "--iam-role", "r"], "--iam-role does not apply to --issuer minio"),
    (["--issuer", "minio", "--iam-endpoint-url", "https://iam.example"], "--iam-endpoint-url does not apply"),
    (["--issuer", "aws-iam", "--key-expiry", "30d"], "--key-expiry applies to --issuer minio only"),
    (["--issuer", "minio", "--key-expiry", "soon"], "invalid --key-expiry 'soon'"),
    (["--issuer", "gcs"], "invalid option 'issuer'"),
    (["--key-expiry", "30d"], "--key-expiry applies to --issuer minio only"),  # detected: the sandbox's moto
])
def test_issuer_options_refused(cli: Cli, sandbox_info: sandbox.SandboxInfo, args: list[str], message: str) -> None:
    result = cli("s3", "--env", "sandbox", "--prefix", f"x{uuid.uuid4().hex[:8]}", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_key_expiry_and_status_of_an_expired_key(cli: Cli, minio: Minio) -> None:
    bucket = f"e{uuid.uuid4().hex[:10]}"
    _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", bucket, "--key-expiry", "30d"))
    access_key, _ = _key("sandbox", bucket)
    info = json.loads(minio.admin.get_service_account(access_key))
    expires = datetime.fromisoformat(info["expiration"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(days=30))) < timedelta(minutes=5)
    assert info["parentUser"] == f"provision-sandbox-{bucket}"

    soon = datetime.now(timezone.utc) + timedelta(seconds=12)
    _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", bucket, "--key-expiry",
            soon.strftime("%Y-%m-%dT%H:%M:%SZ"), "--rotate", "--no-verify"))  # a slow verify outlives the key
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 1.5)
    status = cli("status", "--env", "sandbox", "--json")
    problems = [f"{row['problem']}: {row['wanted']}" for row in json.loads(status.stdout)["rows"]]
    assert any(p.startswith("credential missing or unusable: the stored access key no longer exists")
               for p in problems), problems
    again = _ok(cli("s3", "--env", "sandbox", "--issuer", "minio", bucket))
    assert "new access key" in again.output
    minio.s3(*_key("sandbox", bucket)).list_objects_v2(Bucket=bucket)


def test_admin_credential_without_admin_rights(cli: Cli, minio: Minio, monkeypatch: pytest.MonkeyPatch) -> None:
    user, secret = f"u{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    minio.admin.user_add(user, secret)
    minio.admin.attach_policy(["readwrite"], user=user)
    mine = MinioAdmin(endpoint=urlparse(minio.url).netloc, credentials=StaticProvider(user, secret), secure=False)
    creds = json.loads(mine.add_service_account())["credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["accessKey"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["secretKey"])
    result = cli("s3", "--env", "selfhosted", "--endpoint-url", minio.url, f"n{uuid.uuid4().hex[:10]}")
    assert result.exit_code == 3, result.output
    assert "consoleAdmin" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert creds["secretKey"] not in result.output


class _NotImplementedS3:
    """An S3 client of a server that implements default encryption but not the public access block nor
    ownership controls (what MinIO answers)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _refuse(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append(operation)
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "A header you provided implies "
                                         "functionality that is not implemented"}}, operation)
        return call

    def __getattr__(self, name: str) -> Any:
        if name in ("get_public_access_block", "put_public_access_block", "get_bucket_ownership_controls",
                    "put_bucket_ownership_controls"):
            return self._refuse(name)
        if name == "get_bucket_encryption":
            return lambda **kwargs: {"ServerSideEncryptionConfiguration": {"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}}
        raise AttributeError(name)


@pytest.mark.parametrize("new", [False, True])
def test_settings_a_server_does_not_implement_are_noted(new: bool) -> None:
    s3 = _NotImplementedS3()
    plan = Plan(GrantState(env="x"), dry_run=False)
    if new:
        s3.get_bucket_encryption = None  # type: ignore[attr-defined]  # never read for a new bucket
        s3.put_bucket_encryption = lambda **kwargs: None  # type: ignore[attr-defined]
    s3_buckets.secure_bucket(s3, "b", new=new, plan=plan)
    notes = [c for c in plan.changes if c.action == "no change"]
    assert len(notes) == 1 and "not implemented by this server" in notes[0].detail
    assert "public access block" in notes[0].detail
    assert ("object ownership" in notes[0].detail) == (not new)
    assert not [c for c in plan.changes if c.action == "update" and "public access" in c.detail]
