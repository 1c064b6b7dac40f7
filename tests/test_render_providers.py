"""render-env for Azure and GCS grants: golden files per credential mode and target, the key-file mount, the
refusals (a SAS never written where Supervisely wants the account key, but a Links connection; keyless Azure/GCS
grants for Supervisely and CVAT), and the CVAT bodies validated by cvat-sdk's own request model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from provision.errors import BadInput
from provision.models import Access, Ambient, Grant, KeyFile, KeyPair, SasToken
from provision.render import cvat_cloudstorage_body, render_cvat, render_supervisely, write
from provision.roles import choose_storage
from provision.state import StateStore
from tests.conftest import Cli, single_grant_state
from tests.test_render import compose_binary, render_pair

GOLDEN = Path(__file__).parent / "golden"
FILES = (".env", "remote_links.yml", "docker-compose.override.yml")
ACCOUNT_KEY = "Zm9vYmFyYmF6cXV4" * 5 + "Zm9vYmFyYg=="  # 88 characters, like an Azure account key
SAS = ("st=2026-11-23T10%3A00%3A00Z&se=2026-12-23T10%3A05%3A00Z&sp=rl&spr=https&sv=2026-10-06&ss=b&srt=co"
       "&sig=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789%2BabcdE%3D")
HMAC_SECRET = "bGV0IHVzIHNheSB0aGlzIGlzIGEgc2VjcmV0"


def azure(auth, **kw) -> Grant:
    base = dict(provider="azure", storage_provider="azure", access=Access.full, buckets=["acme-public", "acme-private"],
                endpoint="https://acmesupervisely.blob.core.windows.net", region="westeurope", auth=auth)
    base.update(kw)
    return Grant(**base)


def gcs(auth, **kw) -> Grant:
    base = dict(provider="gcs", storage_provider="google", access=Access.readonly,
                buckets=["acme-public", "acme-private"], endpoint="storage.googleapis.com", region="EU", auth=auth)
    base.update(kw)
    return Grant(**base)


EXPIRES = datetime(2026, 12, 23, 10, 5, tzinfo=timezone.utc)
AZURE_SAS = azure(SasToken(account_name="acmesupervisely", token=SAS, expires_at=EXPIRES), access=Access.readonly)
AZURE_SAS_EMULATOR = azure(SasToken(account_name="provisionsandbox", token=SAS, expires_at=EXPIRES),
                           endpoint="https://127.0.0.1:10000/provisionsandbox",
                           endpoint_url="https://127.0.0.1:10000/provisionsandbox", region=None, access=Access.readonly)
AZURE_KEY = azure(KeyPair(access_key="acmesupervisely", secret_key=ACCOUNT_KEY))
AZURE_KEYLESS = azure(Ambient())
GCS_HMAC = gcs(KeyPair(access_key="GOOG1E" + "EXAMPLEHMACACCESSID" * 2 + "0123456789ABCDEFG", secret_key=HMAC_SECRET),
               storage_provider="minio", port=443)
GCS_KEYLESS = gcs(Ambient())


def gcs_key_file(directory: Path) -> Grant:
    key = directory / "keys" / "prod.json"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMII\n"}))
    key.chmod(0o600)
    return gcs(KeyFile(path=str(key)))


def normalise(text: str, *paths: Path) -> str:
    for path in paths:
        text = text.replace(str(path), "<DIR>")
    return text


def check_golden(mode: str, name: str, got: str) -> None:
    golden = GOLDEN / mode / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text(), f"{mode}/{name}"


@pytest.mark.parametrize("mode", ["azure_account_key", "gcs_key_file", "gcs_hmac"])
def test_supervisely_golden(mode: str, tmp_path: Path) -> None:
    """The grant as the instance storage (a full copy, ``.env``) and as the Links connection ``provision-prod``
    (a GCS key file is mounted at /gcs.json for the storage and at /gcs-provision-prod.json for the connection)."""
    out = tmp_path / "sv"
    out.mkdir()
    g = {"azure_account_key": AZURE_KEY, "gcs_hmac": GCS_HMAC}.get(mode) or gcs_key_file(tmp_path)
    write(render_pair(g, out))
    for name in FILES:
        check_golden(mode, name, normalise((out / name).read_text(), out, tmp_path))
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600


@pytest.mark.parametrize("mode", ["azure_sas", "azure_sas_emulator", "azure_account_key", "gcs_key_file"])
def test_cvat_golden_and_valid_for_cvat_sdk(mode: str, tmp_path: Path) -> None:
    from cvat_sdk.models import CloudStorageWriteRequest

    g = {"azure_sas": AZURE_SAS, "azure_sas_emulator": AZURE_SAS_EMULATOR, "azure_account_key": AZURE_KEY,
         "gcs_hmac": GCS_HMAC}.get(mode) or gcs_key_file(tmp_path)
    files = render_cvat(g, tmp_path)
    write(files)
    text = (tmp_path / "cvat-cloudstorage.json").read_text()
    check_golden(mode, "cvat-cloudstorage.json", text)
    body = json.loads(text)
    assert body == cvat_cloudstorage_body(g)
    CloudStorageWriteRequest(**body)  # cvat-sdk's own model accepts every field and length
    assert stat.S_IMODE(os.stat(tmp_path / "cvat-cloudstorage.json").st_mode) == 0o600


def test_azure_sas_body_is_an_account_name_token_pair() -> None:
    body = cvat_cloudstorage_body(AZURE_SAS)
    assert (body["provider_type"], body["credentials_type"]) == ("AZURE_CONTAINER", "ACCOUNT_NAME_TOKEN_PAIR")
    assert (body["account_name"], body["session_token"]) == ("acmesupervisely", SAS)
    assert "ss=b" in SAS and "srt=co" in SAS  # an account SAS: CVAT's attach check reads container properties


def test_azure_emulator_goes_through_a_connection_string() -> None:
    body = cvat_cloudstorage_body(AZURE_SAS_EMULATOR)
    assert body["credentials_type"] == "CONNECTION_STRING"
    assert body["connection_string"] == f"BlobEndpoint=https://127.0.0.1:10000/provisionsandbox;SharedAccessSignature={SAS}"


def test_gcs_hmac_does_not_fit_cvat_but_s3_compatible_keys_do() -> None:
    """CVAT's ``key`` holds 40 characters; a GCS HMAC access id has 61, so CVAT gets a key file instead. The
    S3-compatible body itself (endpoint_url on storage.googleapis.com) is right for any key that fits."""
    assert len(GCS_HMAC.auth.access_key) == 61
    with pytest.raises(BadInput) as err:
        cvat_cloudstorage_body(GCS_HMAC)
    assert "key-file grant" in str(err.value) and HMAC_SECRET not in str(err.value)
    short = GCS_HMAC.model_copy(update={"auth": KeyPair(access_key="GOOG1EXAMPLE", secret_key=HMAC_SECRET)})
    body = cvat_cloudstorage_body(short)
    assert body["provider_type"] == "AWS_S3_BUCKET"
    assert "endpoint_url=https%3A%2F%2Fstorage.googleapis.com" in body["specific_attributes"]


@pytest.mark.parametrize("g, needle", [(AZURE_SAS, "a SAS token"), (AZURE_KEYLESS, "IAM roles for AWS S3 only")])
def test_supervisely_azure_needs_the_account_key(g: Grant, needle: str, tmp_path: Path) -> None:
    """Supervisely's Azure instance storage takes the account key: a SAS asked for as the storage is refused, and
    a keyless grant is refused anywhere (storage or Links)."""
    out = tmp_path / "sv"
    out.mkdir()
    with pytest.raises(BadInput) as err:
        storage = choose_storage({"c": g}, "c", "prod")
        render_supervisely({"c": g}, out, storage=storage, env="prod")
    assert needle in str(err.value) and "--account-key" in str(err.value)
    assert list(out.iterdir()) == []
    if g.auth.kind == "ambient":
        with pytest.raises(BadInput) as err:
            render_supervisely({"c": g}, out, env="prod")
        assert needle in str(err.value)
        assert list(out.iterdir()) == []


def test_supervisely_gcs_keyless_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "sv"
    out.mkdir()
    with pytest.raises(BadInput) as err:
        render_supervisely({"c": GCS_KEYLESS}, out, env="prod")
    assert "IAM roles for AWS S3 only" in str(err.value) and "--keyless" in str(err.value)
    assert list(out.iterdir()) == []


def test_supervisely_azure_sas_is_a_links_connection(tmp_path: Path) -> None:
    """A SAS is no instance storage, so no grant qualifies: .env is untouched and the SAS becomes the Links
    connection named after its grant (access_key = the account name, secret_key = the SAS)."""
    out = tmp_path / "sv"
    out.mkdir()
    (out / ".env").write_text("SERVER_ADDRESS=x\n")
    assert choose_storage({"datasets": AZURE_SAS}, None, "prod") is None
    files, plan = render_supervisely({"datasets": AZURE_SAS}, out, env="prod")
    write(files)
    assert plan.storage is None and list(plan.connections) == ["datasets"]
    assert (out / ".env").read_text() == "SERVER_ADDRESS=x\n"
    assert not list(out.glob(".env.provision-backup-*"))
    links = yaml.safe_load((out / "remote_links.yml").read_text())
    assert links == {"datasets": {"provider": "azure", "endpoint": "https://acmesupervisely.blob.core.windows.net",
                                  "access_key": "acmesupervisely", "secret_key": SAS,
                                  "buckets": ["acme-public", "acme-private"]}}


@pytest.mark.parametrize("g", [AZURE_KEYLESS, GCS_KEYLESS])
def test_cvat_refuses_keyless(g: Grant, tmp_path: Path) -> None:
    out = tmp_path / "cvat"
    out.mkdir()
    with pytest.raises(BadInput) as err:
        render_cvat(g, out)
    assert "keyless" in str(err.value)
    assert list(out.iterdir()) == []


def test_cli_azure_sas_for_supervisely_storage_exit_2_nothing_written(cli: Cli, workdir: Path) -> None:
    """``--storage`` naming a SAS grant is refused (exit 2, one line, the --account-key fix); without it the SAS
    is written as a Links connection, .env untouched, the SAS never printed."""
    StateStore("az").save(single_grant_state("az", AZURE_SAS, name="datasets"))
    out = workdir / "sv"
    out.mkdir()
    (out / ".env").write_text("SERVER_ADDRESS=x\n")
    result = cli("render-env", "--env", "az", "--out", str(out), "--storage", "datasets")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--account-key" in result.stderr
    assert SAS not in result.output
    assert sorted(p.name for p in out.iterdir()) == [".env"] and (out / ".env").read_text() == "SERVER_ADDRESS=x\n"
    links = cli("render-env", "--env", "az", "--out", str(out))
    assert links.exit_code == 0, links.output
    assert SAS not in links.output
    assert (out / ".env").read_text() == "SERVER_ADDRESS=x\n"
    connection = yaml.safe_load((out / "remote_links.yml").read_text())["datasets"]
    assert (connection["provider"], connection["access_key"], connection["secret_key"]) == (
        "azure", "acmesupervisely", SAS)


@pytest.mark.parametrize("g, hint", [(AZURE_KEYLESS, "--account-key"), (GCS_KEYLESS, "--keyless")])
def test_cli_keyless_for_supervisely_exit_2_nothing_written(g: Grant, hint: str, cli: Cli, workdir: Path) -> None:
    StateStore("kl").save(single_grant_state("kl", g, name="datasets"))
    out = workdir / "sv"
    out.mkdir()
    (out / ".env").write_text("SERVER_ADDRESS=x\n")
    result = cli("render-env", "--env", "kl", "--out", str(out))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Supervisely takes IAM roles for AWS S3 only" in result.stderr and hint in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [".env"] and (out / ".env").read_text() == "SERVER_ADDRESS=x\n"


def test_key_file_mount_through_compose(tmp_path: Path) -> None:
    """The real Compose binary merges the override: the storage's key file by absolute host path at /gcs.json,
    read-only, next to the remote_links.yml mount; .env points STORAGE_CREDENTIALS_PATH at it; the Links
    connection's key is mounted at /gcs-<grant>.json and its credentials_path points there."""
    out = tmp_path / "sv"
    out.mkdir()
    g = gcs_key_file(tmp_path)
    (out / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"http-storage": {
        "image": "supervisely/http-storage",
        "environment": {k: f"${{{k}}}" for k in ("STORAGE_PROVIDER", "STORAGE_ENDPOINT", "STORAGE_CREDENTIALS_PATH")},
        "volumes": ["/srv/data:/data"]}}}))
    write(render_pair(g, out, "conn"))
    run = subprocess.run([compose_binary(), "config", "--format", "json"], cwd=out, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, timeout=60)
    assert run.returncode == 0, run.stderr
    service = json.loads(run.stdout)["services"]["http-storage"]
    assert service["environment"] == {"STORAGE_PROVIDER": "google", "STORAGE_ENDPOINT": "storage.googleapis.com",
                                      "STORAGE_CREDENTIALS_PATH": "/gcs.json"}
    mounts = {v["target"]: (v["source"], v.get("read_only", False)) for v in service["volumes"]}
    assert mounts["/gcs.json"] == (g.auth.path, True) and Path(g.auth.path).is_absolute()
    assert mounts["/gcs-conn.json"] == (g.auth.path, True)
    assert mounts["/remote_links.yml"] == (str(out / "remote_links.yml"), True)
    assert mounts["/data"][0] == "/srv/data"
    links = yaml.safe_load((out / "remote_links.yml").read_text())["conn"]
    assert links == {"provider": "google", "endpoint": "storage.googleapis.com", "credentials_path": "/gcs-conn.json",
                     "buckets": ["acme-public", "acme-private"]}


def test_proxy_cache_settings_only_when_given(cli: Cli, workdir: Path) -> None:
    """--cache lands under services.proxy.environment (read back by the real Compose binary), the proxy's other
    settings stay, a re-render from state (rotation) repeats it, and a bad value is refused with exit 2."""
    from tests.test_render import MODES

    StateStore("prod").save(single_grant_state("prod", MODES["key_pair"]))
    out = workdir / "sv"
    out.mkdir()
    (out / "docker-compose.yml").write_text(yaml.safe_dump({"services": {
        "http-storage": {"image": "supervisely/http-storage"},
        "proxy": {"image": "supervisely/proxy", "environment": {"CACHE_PREVIEWS_SIZE": "1g", "WORKERS": "4"}}}}))
    plain = cli("render-env", "--env", "prod", "--out", str(out))
    assert plain.exit_code == 0, plain.output
    assert "proxy" not in yaml.safe_load((out / "docker-compose.override.yml").read_text())["services"]
    result = cli("render-env", "--env", "prod", "--out", str(out), "--cache", "storage-size=50g",
                 "--cache", "previews-expires=1d")
    assert result.exit_code == 0, result.output
    run = subprocess.run([compose_binary(), "config", "--format", "json"], cwd=out, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(workdir)}, timeout=60)
    assert run.returncode == 0, run.stderr
    proxy = json.loads(run.stdout)["services"]["proxy"]["environment"]
    assert proxy == {"CACHE_PREVIEWS_SIZE": "1g", "WORKERS": "4", "CACHE_STORAGE_SIZE": "50g",
                     "CACHE_PREVIEWS_EXPIRES": "1d"}
    from provision.state import StateStore as Store

    record = Store("prod").load().renders[-1]
    assert record.options["proxy_env"] == {"CACHE_STORAGE_SIZE": "50g", "CACHE_PREVIEWS_EXPIRES": "1d"}
    before = (out / "docker-compose.override.yml").read_text()
    for bad in ("storage-size=lots", "nope=1g", "storage-size", "previews-expires=-1d"):
        refused = cli("render-env", "--env", "prod", "--out", str(out), "--cache", bad)
        assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1, bad
    assert (out / "docker-compose.override.yml").read_text() == before
    cvat = cli("render-env", "--env", "prod", "--out", str(out), "--target", "cvat", "--cache", "storage-size=1g")
    assert cvat.exit_code == 2 and "--cache" in cvat.stderr
