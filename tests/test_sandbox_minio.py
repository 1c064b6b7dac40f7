"""The sandbox's MinIO (`provision.sandbox_minio`) in front of the enforcing moto of the sandbox, driven by the real
``minio.MinioAdmin`` client: the keys it issues are allowed and denied by their policies."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.crypto import encrypt
from minio.error import MinioAdminException
from minio.minioadmin import _COMMAND

from provision import sandbox, sandbox_minio


class Minio:
    """The emulator on a free 127.0.0.1 port, its root key, and client factories."""

    def __init__(self, info: sandbox.SandboxInfo) -> None:
        from werkzeug.serving import make_server

        self.root = (info.s3.access_key, info.s3.secret_key)
        self.app = sandbox_minio.minio_app(info.s3.endpoint_url, *self.root)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                  request_handler=sandbox_minio.request_handler())
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def admin(self, access_key: str | None = None, secret_key: str | None = None) -> MinioAdmin:
        return MinioAdmin(endpoint=self.endpoint, credentials=StaticProvider(access_key or self.root[0],
                                                                             secret_key or self.root[1]),
                          secure=False)

    def s3(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
                            aws_access_key_id=access_key or self.root[0],
                            aws_secret_access_key=secret_key or self.root[1],
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def minio(sandbox_info: sandbox.SandboxInfo) -> Iterator[Minio]:
    server = Minio(sandbox_info)
    try:
        yield server
    finally:
        server.stop()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _read_only(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [f"arn:aws:s3:::{bucket}"]},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]}]}


def _full(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _buckets(minio: Minio) -> tuple[str, str]:
    """Two buckets with one object each, made through the emulator with the root key."""
    s3 = minio.s3()
    names = (_name("mine"), _name("other"))
    for bucket in names:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    return names


def _expect_read_only(s3: Any, bucket: str, other: str) -> None:
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a.txt"]
    assert s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"hello"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="b.txt", Body=b"x")
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=other)
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=other, Key="a.txt")
    assert _code(exc) == "AccessDenied"


def test_user_with_canned_policy_and_service_account(minio: Minio) -> None:
    bucket, other = _buckets(minio)
    admin = minio.admin()
    user, secret, read, full = _name("user"), "s3cr3t-" + uuid.uuid4().hex, _name("ro"), _name("rw")
    admin.policy_add(read, policy=_read_only(bucket))
    with pytest.raises(MinioAdminException) as refused:
        admin.policy_add(_name("bad"), policy={"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]})
    assert refused.value._code == "400"
    assert json.loads(admin.policy_info(read)) == _read_only(bucket)
    assert read in json.loads(admin.policy_list())
    admin.user_add(user, secret)
    attached = json.loads(admin.attach_policy([read], user=user))
    assert attached["policiesAttached"] == [read]
    assert json.loads(admin.user_info(user))["policyName"] == read
    assert json.loads(admin.user_list())[user]["status"] == "enabled"
    with pytest.raises(MinioAdminException) as refused:
        admin.attach_policy([read], user=user)
    assert "XMinioAdminPolicyChangeAlreadyApplied" in str(refused.value)

    # the user makes its own service account (MinioAdmin has no targetUser): it inherits the user's policy
    mine = minio.admin(user, secret)
    creds = json.loads(mine.add_service_account(name="cvat", description="provision"))["credentials"]
    assert creds["expiration"] == sandbox_minio.NEVER
    key = creds["accessKey"]
    s3 = minio.s3(key, creds["secretKey"])
    _expect_read_only(s3, bucket, other)
    with pytest.raises(ClientError) as exc:
        minio.s3(key, "wrong" + creds["secretKey"][5:]).list_objects_v2(Bucket=bucket)
    assert _code(exc) == "SignatureDoesNotMatch"

    info = json.loads(admin.get_service_account(key))
    assert (info["parentUser"], info["accountStatus"], info["impliedPolicy"], info["name"]) == (
        user, "on", True, "cvat")
    assert json.loads(info["policy"])["Statement"] == _read_only(bucket)["Statement"]
    listed = json.loads(mine.list_service_account(user))["accounts"]
    assert [a["accessKey"] for a in listed] == [key]
    assert [a["accessKey"] for a in json.loads(admin.list_service_account(user))["accounts"]] == [key]

    # a full policy attached to the user reaches its existing key
    admin.policy_add(full, policy=_full(bucket))
    admin.attach_policy([full], user=user)
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="b.txt")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=other, Key="b.txt", Body=b"x")
    assert _code(exc) == "AccessDenied"
    assert json.loads(admin.detach_policy([full], user=user))["policiesDetached"] == [full]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="b.txt", Body=b"x")
    assert _code(exc) == "AccessDenied"

    # a policy in use cannot be removed; a user cannot administer others
    with pytest.raises(MinioAdminException) as refused:
        admin.policy_remove(read)
    assert "XMinioAdminPolicyInUse" in str(refused.value)
    with pytest.raises(MinioAdminException) as refused:
        mine.user_add(_name("intruder"), "password123")
    assert refused.value._code == "403"

    admin.delete_service_account(key)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket)
    assert _code(exc) == "InvalidAccessKeyId"
    with pytest.raises(MinioAdminException) as refused:
        admin.get_service_account(key)
    assert refused.value._code == "404"

    admin.user_remove(user)
    with pytest.raises(MinioAdminException) as refused:
        admin.user_info(user)
    assert refused.value._code == "404" and "XMinioAdminNoSuchUser" in str(refused.value)
    admin.policy_remove(read)
    admin.policy_remove(full)
    assert read not in json.loads(admin.policy_list())


def test_removing_a_user_revokes_its_service_accounts(minio: Minio) -> None:
    bucket, _ = _buckets(minio)
    admin = minio.admin()
    user, secret, policy = _name("user"), "password-" + uuid.uuid4().hex[:16], _name("ro")
    admin.policy_add(policy, policy=_read_only(bucket))
    admin.user_add(user, secret)
    admin.attach_policy([policy], user=user)
    keys = [json.loads(minio.admin(user, secret).add_service_account())["credentials"] for _ in range(3)]
    for creds in keys:  # more keys than moto allows one IAM user (2)
        minio.s3(creds["accessKey"], creds["secretKey"]).get_object(Bucket=bucket, Key="a.txt")
    admin.user_disable(user)
    with pytest.raises(ClientError) as exc:
        minio.s3(keys[0]["accessKey"], keys[0]["secretKey"]).get_object(Bucket=bucket, Key="a.txt")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    admin.user_enable(user)
    admin.user_remove(user)
    for creds in keys:
        with pytest.raises(ClientError) as exc:
            minio.s3(creds["accessKey"], creds["secretKey"]).list_objects_v2(Bucket=bucket)
        assert _code(exc) == "InvalidAccessKeyId"
    admin.policy_remove(policy)


def test_root_service_account_with_session_policy_and_expiration(minio: Minio,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bucket, other = _buckets(minio)
    admin = minio.admin()
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    creds = json.loads(admin.add_service_account(policy=_read_only(bucket), expiration=sandbox_minio._rfc3339(
        expires)))["credentials"]
    assert creds["expiration"] == sandbox_minio._rfc3339(expires)
    s3 = minio.s3(creds["accessKey"], creds["secretKey"])
    _expect_read_only(s3, bucket, other)  # the root may do anything: the key's own policy restricts it
    info = json.loads(admin.get_service_account(creds["accessKey"]))
    assert (info["parentUser"], info["impliedPolicy"], info["expiration"]) == (
        minio.root[0], False, sandbox_minio._rfc3339(expires))
    assert json.loads(info["policy"]) == _read_only(bucket)

    later = datetime.now(timezone.utc) + timedelta(hours=2)
    monkeypatch.setattr(sandbox_minio, "_now", lambda: later)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket)
    assert _code(exc) == "InvalidAccessKeyId"
    monkeypatch.undo()
    with pytest.raises(MinioAdminException) as refused:  # purged once expired
        admin.get_service_account(creds["accessKey"])
    assert refused.value._code == "404"
    with pytest.raises(MinioAdminException) as refused:
        admin.add_service_account(expiration="2001-01-01T00:00:00Z")
    assert refused.value._code == "400"


def test_admin_requests_are_authenticated(minio: Minio) -> None:
    with pytest.raises(MinioAdminException) as refused:
        minio.admin(minio.root[0], "not-the-secret").policy_list()
    assert refused.value._code == "403" and "SignatureDoesNotMatch" in str(refused.value)
    with pytest.raises(MinioAdminException) as refused:
        minio.admin("nobody-knows-me", "whatever-secret").policy_list()
    assert refused.value._code == "403" and "InvalidAccessKeyId" in str(refused.value)
    assert json.loads(minio.admin().info())["mode"] == "online"


@pytest.mark.parametrize("body", ["plain", "wrong-key"])
def test_admin_bodies_must_be_encrypted_with_the_callers_secret(minio: Minio, body: str) -> None:
    admin = minio.admin()
    user = _name("user")
    payload = json.dumps({"status": "enabled", "secretKey": "password-123"}).encode()
    data = payload if body == "plain" else encrypt(payload, "some-other-secret")
    with pytest.raises(MinioAdminException) as refused:
        admin._url_open(method="PUT", command=_COMMAND.ADD_USER, query_params={"accessKey": user}, body=data)
    assert refused.value._code == "400" and "XMinioAdminConfigBadJSON" in str(refused.value)
    with pytest.raises(MinioAdminException):
        admin.user_info(user)


def test_every_answer_says_minio(minio: Minio) -> None:
    s3 = minio.s3()
    bucket = _name("hdr")
    answer = s3.create_bucket(Bucket=bucket)
    assert answer["ResponseMetadata"]["HTTPHeaders"]["server"] == "MinIO"
    assert s3.list_buckets()["ResponseMetadata"]["HTTPHeaders"]["server"] == "MinIO"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="missing")
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["server"] == "MinIO"
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"http://{minio.endpoint}/minio/admin/v3/list-canned-policies", timeout=10)
    assert denied.value.code == 403 and denied.value.headers["Server"] == "MinIO"
    with urllib.request.urlopen(f"http://{minio.endpoint}/minio/health/live", timeout=10) as live:
        assert live.status == 200 and live.headers["Server"] == "MinIO"
