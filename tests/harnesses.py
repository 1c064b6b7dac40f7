"""The provider harnesses of the contract suites (test_contract.py, test_data_contract.py): how to call each
provider's command on the sandbox and how to look at its emulator (names, objects, request log, faults)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from provision import sandbox
from provision.models import Access
from provision.policies import s3_policy
from tests.conftest import Admin, AzureAdmin, Cli, GcsAdmin, read_grant
from tests.fake_fixtures import PROJECT, fake_google_project


class Harness:
    """How the suite drives one provider and looks at its emulator."""

    name = ""
    bucket_kind = "bucket"
    render_args: tuple[str, ...] = ("--target", "supervisely")
    """The ``render-env`` target (and its required flags) for the grant `args` issues."""
    fault = {"count": 10, "status": 500}
    verify_env = "sandbox"
    probes: dict[str, tuple[str, str]] = {}
    """What `provision verify` must probe: ``read``/``write`` (operation, target marker "" = the grant's buckets) and
    ``other`` (operation, marker of the target that stands for data outside the grant)."""

    def args(self, prefix: str, full: bool = False, buckets: list[str] | None = None) -> list[str]:
        raise NotImplementedError

    def verify_args(self, prefix: str, full: bool) -> list[str]:
        """The command that issues a grant `provision verify` can probe (a key the emulator enforces)."""
        return self.args(prefix, full=full)

    @contextmanager
    def verifiable(self, monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Iterator[None]:
        """Whatever the provider needs around `verify_args` and `provision verify` (nothing by default)."""
        yield

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
    probes = {"read": ("GetObject", ""), "write": ("PutObject", ""), "other": ("ListObjectsV2", "another bucket")}

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.s3 = admin.s3
        """The admin S3 client the harness reads, writes and drops buckets with."""

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
        state = read_grant()
        keys = self.admin.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        assert [k["AccessKeyId"] for k in keys] == [state["grant"]["auth"]["access_key"]]
        policy = self.admin.iam.get_user_policy(UserName=user, PolicyName=f"provision-sandbox-{prefix}")[
            "PolicyDocument"]
        assert policy == s3_policy([f"{prefix}-public", f"{prefix}-private"], Access.full)
        for bucket in (f"{prefix}-public", f"{prefix}-private"):
            pab = self.admin.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert all(pab.values())
            assert self.admin.s3.get_bucket_encryption(Bucket=bucket)
        assert {r["kind"] for r in state["resources"]} == {"bucket", "iam_user", "user_policy", "access_key"}
        assert all(r["created"] for r in state["resources"])

    def make_bucket(self, name: str, key: str, data: bytes) -> None:
        self.s3.create_bucket(Bucket=name)
        self.put(name, key, data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def drop_bucket(self, name: str) -> None:
        self.s3.delete_bucket(Bucket=name)


class S3Minio(S3):
    """`provision s3 --issuer minio` on the sandbox's MinIO (`provision.sandbox_minio`): buckets through its S3 API,
    the grant's canned policy, user, attachment and access key through its admin API. Its request log holds both,
    each admin call that changes something (PUT/POST/DELETE ``/minio/admin/v3/...``) marked mutating like an S3
    write, so `mutating` sees them."""

    def __init__(self, admin: Admin) -> None:
        import boto3
        from botocore.config import Config
        from minio import MinioAdmin
        from minio.credentials import StaticProvider

        super().__init__(admin)
        minio = admin.info.minio
        assert minio is not None, "the sandbox has no MinIO endpoint"
        self.minio = minio
        self.s3 = boto3.client("s3", endpoint_url=minio.endpoint_url, region_name=admin.info.s3.region,
                               aws_access_key_id=minio.access_key, aws_secret_access_key=minio.secret_key,
                               config=Config(s3={"addressing_style": "path"}))
        self.madmin = MinioAdmin(endpoint=urlparse(minio.endpoint_url).netloc,
                                 credentials=StaticProvider(minio.access_key, minio.secret_key), secure=False)

    def args(self, prefix: str, full: bool = False, buckets: list[str] | None = None) -> list[str]:
        return ["s3", "--env", "sandbox", "--issuer", "minio", *(buckets or ["--prefix", prefix]),
                *(["--full"] if full else [])]

    @property
    def log_url(self) -> str:
        return str(self.minio.endpoint_url)

    def names(self, prefix: str) -> list[str]:
        """Buckets, MinIO users and canned policies holding ``prefix``, and the access keys of those users."""
        users = [u for u in json.loads(self.madmin.user_list()) if prefix in u]
        keys = [a["accessKey"] for u in users
                for a in json.loads(self.madmin.list_service_account(u)).get("accounts") or []]
        policies = [p for p in json.loads(self.madmin.policy_list()) if prefix in p]
        buckets = [b["Name"] for b in self.s3.list_buckets()["Buckets"] if prefix in b["Name"]]
        return sorted(buckets + users + keys + policies)

    def converged(self, prefix: str) -> None:
        name = f"provision-sandbox-{prefix}"
        state = read_grant()
        policy = json.loads(self.madmin.policy_info(name))
        assert policy == s3_policy([f"{prefix}-public", f"{prefix}-private"], Access.full)
        assert json.loads(self.madmin.user_info(name))["policyName"] == name
        accounts = json.loads(self.madmin.list_service_account(name))["accounts"]
        assert [a["accessKey"] for a in accounts] == [state["grant"]["auth"]["access_key"]]
        assert {r["kind"] for r in state["resources"]} == {"bucket", "minio_policy", "minio_user",
                                                          "minio_policy_attachment", "minio_access_key"}
        assert all(r["created"] for r in state["resources"])


class Azure(Harness):
    name = "azure"
    bucket_kind = "container"
    render_args = ("--target", "cvat")  # Supervisely's storage takes the account key, not the SAS this suite issues
    probes = {"read": ("GetBlob", ""), "write": ("PutBlob", ""),  # an account SAS reaches every container:
              "other": ("GetBlob", "another account")}          # outside the grant is the other account

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

        state = read_grant()
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
    verify_env = "gcp"  # the sandbox's emulator enforces no IAM: verify probes a key file through FakeGoogle
    # Supervisely ("IAM roles are for AWS S3 only") and CVAT take no keyless GCS grant; Onepanel names its bucket
    render_args = ("--target", "onepanel", "--namespace", "demo")
    project = PROJECT
    probes = {"read": ("objects.get", ""), "write": ("objects.create", ""),
              "other": ("objects.get", "another bucket")}

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

    def verify_args(self, prefix: str, full: bool) -> list[str]:
        return ["gcs", "--env", self.verify_env, "--project", self.project, "--prefix", prefix,
                *(["--full"] if full else [])]

    @contextmanager
    def verifiable(self, monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Iterator[None]:
        """A real-project setup on loopback (as the ``google`` fixture, tests/fake_fixtures.py): ADC is a
        service-account JSON whose token endpoint is `FakeGoogle`, which also serves IAM admin and enforces bucket
        IAM in front of the sandbox's emulator."""
        with fake_google_project(self.admin.endpoint.endpoint_url, self.project, monkeypatch, workdir):
            yield

    def make_bucket(self, name: str, key: str, data: bytes) -> None:
        self.admin.storage.create_bucket(name)
        self.put(name, key, data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.admin.storage.bucket(bucket).blob(key).download_as_bytes()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.admin.storage.bucket(bucket).blob(key).upload_from_string(data)

    def drop_bucket(self, name: str) -> None:
        self.admin.storage.bucket(name).delete()


def run(cli: Cli, *args: str) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return result
