"""CVAT and Onepanel targets: render-env --target cvat (exact JSON, 0600, secret never printed, role grants refused),
`provision cvat attach` against a local stand-in for CVAT's REST API that validates every body with cvat-sdk's own
models (create, idempotent re-run, rotated key PATCHed in place, token and password auth), and
render-env --target onepanel (exact env file, folders in the bucket, warning outside the namespace)."""

from __future__ import annotations

import json
import os
import stat
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from provision.models import Access, Grant, KeyPair, Role
from provision.render import render_cvat
from provision.state import StateStore
from tests.conftest import Admin, Cli, error_lines, read_grant, single_grant_state
from tests.cvat_fake import PASSWORD, TOKEN, USER, FakeCvat


@pytest.fixture
def provisioned(cli: Cli, admin: Admin, prefix: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A read-only key on ``<prefix>-public`` + ``<prefix>-private`` in the sandbox; returns the stored grant."""
    for var in ("CVAT_ACCESS_TOKEN", "CVAT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly")
    assert result.exit_code == 0, result.output
    return read_grant("sandbox")["grant"]


def set_grant(env: str, grant: Grant) -> None:
    StateStore(env).save(single_grant_state(env, grant))


# ---- render-env --target cvat ------------------------------------------------------------------------------------
def test_render_cvat_exact_json_0600_secret_never_printed(cli: Cli, provisioned: dict[str, Any], workdir: Path,
                                                          prefix: str) -> None:
    out = workdir / "out"
    out.mkdir()
    result = cli("render-env", "--env", "sandbox", "--target", "cvat", "--out", str(out))
    assert result.exit_code == 0, result.output
    path = out / "cvat-cloudstorage.json"
    auth = provisioned["auth"]
    assert json.loads(path.read_text()) == {
        "provider_type": "AWS_S3_BUCKET",
        "resource": f"{prefix}-public",
        "display_name": f"{prefix}-public",
        "credentials_type": "KEY_SECRET_KEY_PAIR",
        "key": auth["access_key"],
        "secret_key": auth["secret_key"],
        "specific_attributes": "region=us-east-1&endpoint_url="
                               + provisioned["endpoint_url"].replace(":", "%3A").replace("/", "%2F"),
        "manifests": [],
    }
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth["secret_key"] not in result.stdout + result.stderr
    assert "masked" in result.stderr

    again = cli("render-env", "--env", "sandbox", "--target", "cvat", "--out", str(out), "--json",
                "--bucket", f"{prefix}-private", "--display-name", "Private data", "--manifest", "img/manifest.jsonl")
    assert again.exit_code == 0, again.output
    assert auth["secret_key"] not in again.stdout + again.stderr
    body = json.loads(path.read_text())
    assert (body["resource"], body["display_name"], body["manifests"]) == (
        f"{prefix}-private", "Private data", ["img/manifest.jsonl"])
    assert json.loads(again.stdout)["files"][0]["action"] == "update"
    backups = list(out.glob("cvat-cloudstorage.json.provision-backup-*"))
    assert len(backups) == 1 and stat.S_IMODE(os.stat(backups[0]).st_mode) == 0o600


def test_rotate_rerenders_the_cvat_file(cli: Cli, provisioned: dict[str, Any], workdir: Path, prefix: str) -> None:
    out = workdir / "cvat"
    out.mkdir()
    result = cli("render-env", "--env", "sandbox", "--target", "cvat", "--out", str(out), "--bucket",
                 f"{prefix}-private", "--manifest", "m/manifest.jsonl")
    assert result.exit_code == 0, result.output
    rotated = cli("s3", "--env", "sandbox", "--prefix", prefix, "--rotate")
    assert rotated.exit_code == 0, rotated.output
    new = read_grant("sandbox")["grant"]["auth"]
    assert new["access_key"] != provisioned["auth"]["access_key"]
    body = json.loads((out / "cvat-cloudstorage.json").read_text())
    assert (body["key"], body["secret_key"]) == (new["access_key"], new["secret_key"])
    assert (body["resource"], body["manifests"]) == (f"{prefix}-private", ["m/manifest.jsonl"])
    assert new["secret_key"] not in rotated.stdout + rotated.stderr


def test_render_cvat_aws_text_is_exact(tmp_path: Path) -> None:
    """On AWS itself (no endpoint_url) specific_attributes carries only the region; the file is exactly this."""
    grant = Grant(provider="s3", storage_provider="minio", access=Access.readonly, buckets=["acme-public"],
                  endpoint="s3.amazonaws.com", port=443, region="eu-central-1",
                  auth=KeyPair(access_key="AKIAEXAMPLEEXAMPLE12",
                               secret_key='wJalr"Xu\\tnFEMI/K7MDENG+bPxRfiCYEXAMPLE'))
    [f] = render_cvat(grant, tmp_path)
    assert f.content == (
        '{\n  "provider_type": "AWS_S3_BUCKET",\n  "resource": "acme-public",\n  "display_name": "acme-public",\n'
        '  "credentials_type": "KEY_SECRET_KEY_PAIR",\n  "key": "AKIAEXAMPLEEXAMPLE12",\n'
        '  "secret_key": "wJalr\\"Xu\\\\tnFEMI/K7MDENG+bPxRfiCYEXAMPLE",\n'
        '  "specific_attributes": "region=eu-central-1",\n  "manifests": []\n}\n')


def test_render_cvat_refuses_role_grant(cli: Cli, workdir: Path) -> None:
    set_grant("rolemode", Grant(provider="s3", storage_provider="minio", access=Access.readonly, buckets=["acme-x"],
                                endpoint="s3.amazonaws.com", port=443, region="us-east-1",
                                auth=Role(role_name="supervisely-storage")))
    result = cli("render-env", "--env", "rolemode", "--target", "cvat")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CVAT" in lines[0] and "IAM-role" in lines[0] and "needs a key" in lines[0]
    assert not (workdir / "cvat-cloudstorage.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "cvat", "--namespace", "demo"], "does not apply"),
    (["--target", "cvat", "--bucket", "not-in-grant"], "not part of this grant"),
    (["--target", "cvat", "--display-name", "x" * 64], "at most 63"),
    (["--target", "onepanel"], "needs --namespace"),
    (["--target", "onepanel", "--namespace", "Demo_NS"], "invalid --namespace"),
    (["--target", "onepanel", "--namespace", "demo", "--sync-dir", "a/../b"], "invalid --sync-dir"),
])
def test_render_bad_options_exit_2(cli: Cli, provisioned: dict[str, Any], args: list[str], message: str) -> None:
    result = cli("render-env", "--env", "sandbox", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(error_lines(result)) == 1


# ---- cvat attach -------------------------------------------------------------------------------------------------
def attach(cli: Cli, cvat: FakeCvat, *extra: str) -> Any:
    return cli("cvat", "attach", "--env", "sandbox", "--url", cvat.url, "--json", *extra)


def test_attach_creates_once_then_updates_in_place(cli: Cli, provisioned: dict[str, Any], cvat: FakeCvat,
                                                   prefix: str) -> None:
    first = attach(cli, cvat, "--token", TOKEN)
    assert first.exit_code == 0, first.output
    created = json.loads(first.stdout)
    assert (created["action"], created["id"], created["resource"]) == ("create", 1, f"{prefix}-public")
    assert created["server_version"] == "2.80.0"
    second = attach(cli, cvat, "--token", TOKEN)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["action"] == "update" and json.loads(second.stdout)["id"] == 1
    assert list(cvat.storages) == [1]
    assert cvat.errors == []
    assert set(cvat.auth_seen) == {"token"}
    writes = [c for c in cvat.calls if c[0] in ("POST", "PATCH")]
    assert writes == [("POST", "/api/cloudstorages"), ("PATCH", "/api/cloudstorages/1")]
    stored = cvat.storages[1]
    assert stored["key"] == provisioned["auth"]["access_key"]
    assert stored["secret_key"] == provisioned["auth"]["secret_key"]
    assert stored["specific_attributes"].startswith("region=us-east-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A")

    # A rotated key (edited into the state file) reaches CVAT on the next run: same id, PATCHed.
    path = Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.json"
    state = json.loads(path.read_text())
    [record] = state["grants"].values()
    record["grant"]["auth"].update(access_key="AKIAROTATEDROTATED01", secret_key="r" * 40)
    path.write_text(json.dumps(state))
    third = attach(cli, cvat, "--token", TOKEN)
    assert third.exit_code == 0, third.output
    assert (json.loads(third.stdout)["action"], json.loads(third.stdout)["id"]) == ("update", 1)
    assert list(cvat.storages) == [1]
    assert (cvat.storages[1]["key"], cvat.storages[1]["secret_key"]) == ("AKIAROTATEDROTATED01", "r" * 40)
    assert cvat.errors == []
    for result in (first, second, third):
        assert provisioned["auth"]["secret_key"] not in result.stdout + result.stderr
        assert TOKEN not in result.stdout + result.stderr


def test_attach_with_password_session(cli: Cli, provisioned: dict[str, Any], cvat: FakeCvat, prefix: str) -> None:
    result = attach(cli, cvat, "--username", USER, "--password", PASSWORD, "--bucket", f"{prefix}-private",
                    "--display-name", "private images", "--manifest", "train/manifest.jsonl")
    assert result.exit_code == 0, result.output
    assert cvat.errors == [] and set(cvat.auth_seen) == {"session"}
    assert cvat.storages[1]["resource"] == f"{prefix}-private"
    assert cvat.storages[1]["manifests"] == ["train/manifest.jsonl"]
    assert ("POST", "/api/auth/logout") in cvat.calls
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--token", "wrong-token"], 3, "refused the login"),
    (["--username", USER, "--password", "wrong"], 3, "refused the login"),
    ([], 2, "credentials are missing"),
    (["--token", TOKEN, "--username", USER, "--password", PASSWORD], 2, "not both"),
])
def test_attach_refusals(cli: Cli, provisioned: dict[str, Any], cvat: FakeCvat, args: list[str], code: int,
                         message: str) -> None:
    result = attach(cli, cvat, *args)
    if "wrong-token" in args:  # a bad token only shows on the first authenticated request
        message = "refused the cloud storage"
    assert result.exit_code == code, result.output
    assert message in result.stderr and len(error_lines(result)) == 1
    assert cvat.storages == {}
    assert TOKEN not in result.stderr and PASSWORD not in result.stderr


def test_attach_unreachable_is_bad_input(cli: Cli, provisioned: dict[str, Any]) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]  # a port that is free once this block ends
    result = cli("cvat", "attach", "--env", "sandbox", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN)
    assert result.exit_code == 2, result.output
    assert "cannot reach CVAT" in result.stderr


def test_attach_refuses_role_grant(cli: Cli, cvat: FakeCvat) -> None:
    set_grant("rolemode", Grant(provider="s3", storage_provider="minio", access=Access.readonly, buckets=["acme-x"],
                                endpoint="s3.amazonaws.com", port=443, region="us-east-1",
                                auth=Role(role_name="supervisely-storage")))
    result = cli("cvat", "attach", "--env", "rolemode", "--url", cvat.url, "--token", TOKEN)
    assert result.exit_code == 2 and "IAM-role" in result.stderr
    assert cvat.calls == []


# ---- render-env --target onepanel --------------------------------------------------------------------------------
def folder_exists(admin: Admin, bucket: str, key: str) -> bool:
    try:
        return admin.s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 0
    except ClientError:
        return False


def test_onepanel_env_and_folders(cli: Cli, admin: Admin, provisioned: dict[str, Any], workdir: Path,
                                  prefix: str) -> None:
    bucket = f"{prefix}-public"
    result = cli("render-env", "--env", "sandbox", "--target", "onepanel", "--namespace", "demo")
    assert result.exit_code == 0, result.output
    assert (workdir / "onepanel.env").read_text() == (
        "# Onepanel CVAT workspace storage: managed by provision (`provision render-env --target onepanel`).\n"
        f"# Export these in Onepanel before creating the CVAT workspace. Bucket {bucket}: the file syncer downloads\n"
        "# demo/workflow-data/ and CVAT stores trained models under demo/workflow-data/output/\n"
        "export ONEPANEL_SYNC_DIRECTORY=workflow-data\n"
        "export ONEPANEL_WORKFLOW_MODEL_DIR=output\n")
    assert folder_exists(admin, bucket, "demo/workflow-data/")
    assert folder_exists(admin, bucket, "demo/workflow-data/output/")
    assert "warning" not in result.stderr
    assert f"created folder s3://{bucket}/demo/workflow-data/output/" in result.stderr

    admin.reset_log()
    again = cli("render-env", "--env", "sandbox", "--target", "onepanel", "--namespace", "demo", "--json")
    assert again.exit_code == 0, again.output
    assert admin.mutating() == []
    assert json.loads(again.stdout)["created"] == [] and json.loads(again.stdout)["warnings"] == []


def test_onepanel_custom_dirs_and_outside_namespace_warning(cli: Cli, admin: Admin, provisioned: dict[str, Any],
                                                            workdir: Path, prefix: str) -> None:
    bucket = f"{prefix}-private"
    inside = cli("render-env", "--env", "sandbox", "--target", "onepanel", "--namespace", "team-a", "--bucket",
                 bucket, "--sync-dir", "/team-a/data/sync/", "--model-dir", "models")
    assert inside.exit_code == 0, inside.output
    text = (workdir / "onepanel.env").read_text()
    assert "export ONEPANEL_SYNC_DIRECTORY=data/sync\nexport ONEPANEL_WORKFLOW_MODEL_DIR=models\n" in text
    assert folder_exists(admin, bucket, "team-a/data/sync/models/")
    assert "warning" not in inside.stderr

    outside = cli("render-env", "--env", "sandbox", "--target", "onepanel", "--namespace", "team-a", "--bucket",
                  bucket, "--sync-dir", "/shared/images")
    assert outside.exit_code == 0, outside.output
    assert "export ONEPANEL_SYNC_DIRECTORY=shared/images\n" in (workdir / "onepanel.env").read_text()
    assert folder_exists(admin, bucket, "shared/images/")
    assert folder_exists(admin, bucket, "team-a/shared/images/output/")
    warning = " ".join(outside.stderr.split())
    assert "warning: the sync directory shared/images/ is outside namespace team-a" in warning
    assert "uploaded to CVAT by hand" in warning


# ---- Azure and GCS grants -----------------------------------------------------------------------------------------
def test_attach_azure_sas_and_gcs_key_file(cli: Cli, cvat: FakeCvat, workdir: Path) -> None:
    """An Azure account SAS goes as ACCOUNT_NAME_TOKEN_PAIR; a GCS key file as a multipart upload of the file
    itself (CVAT's KEY_FILE_PATH), updated in place on a re-run; neither secret is printed."""
    from datetime import datetime, timezone

    from provision.models import KeyFile, SasToken

    sas = "se=2026-12-01T00%3A00%3A00Z&sp=rl&spr=https&sv=2026-10-06&ss=b&srt=co&sig=c2lnbmF0dXJl"
    StateStore("az").save(single_grant_state("az", Grant(
        provider="azure", storage_provider="azure", access=Access.readonly, buckets=["acme-public"],
        endpoint="https://acmesv.blob.core.windows.net",
        auth=SasToken(account_name="acmesv", token=sas, expires_at=datetime(2026, 12, 1, tzinfo=timezone.utc)))))
    result = cli("cvat", "attach", "--env", "az", "--url", cvat.url, "--json", "--token", TOKEN)
    assert result.exit_code == 0, result.output
    stored = cvat.storages[1]
    assert (stored["provider_type"], stored["credentials_type"]) == ("AZURE_CONTAINER", "ACCOUNT_NAME_TOKEN_PAIR")
    assert (stored["account_name"], stored["session_token"]) == ("acmesv", sas)
    assert sas not in result.output and "c2lnbmF0dXJl" not in result.output

    key = workdir / "key.json"
    key.write_bytes(b'{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}')
    key.chmod(0o600)
    StateStore("gs").save(single_grant_state("gs", Grant(
        provider="gcs", storage_provider="google", access=Access.readonly, buckets=["acme-data"],
        endpoint="storage.googleapis.com", auth=KeyFile(path=str(key)))))
    for action in ("create", "update"):
        result = cli("cvat", "attach", "--env", "gs", "--url", cvat.url, "--json", "--token", TOKEN)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["action"] == action
        assert cvat.multipart_seen and cvat.files["key_file"] == key.read_bytes()
        cvat.files.clear()
    gcs = cvat.storages[2]
    assert (gcs["provider_type"], gcs["credentials_type"], gcs["resource"]) == (
        "GOOGLE_CLOUD_STORAGE", "KEY_FILE_PATH", "acme-data")
    assert list(cvat.storages) == [1, 2] and cvat.errors == []
    assert "PRIVATE KEY" not in result.output
