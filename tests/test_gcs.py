"""`provision gcs`: buckets and objects against the GCS emulator of the sandbox; service accounts, keys, HMAC keys and
the OAuth token endpoint against `tests.gcp_fake.FakeGoogle` (IAM admin has no emulator), which also stands in front
of the emulator to record request bodies and enforce bucket IAM per caller. The emulator drops UBLA and PAP from a
bucket insert and enforces no IAM (shared/REFERENCE.md §5), so these tests assert on the bodies that leave our code.
Then `migrate`, `links` and `manifest` on a GCS sandbox environment."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from provision import sandbox
from provision.errors import BadInput
from provision.models import Access
from provision.providers.base import SDK_ATTEMPTS_ENV
from provision.providers.gcp import SANDBOX_NOTE, GcsOptions, sdk
from provision.providers.gcp.verify import json_api_outcome, xml_api_outcome
from tests.conftest import Cli, GcsAdmin, read_grant
from tests.fake_fixtures import PROJECT
from tests.gcp_fake import FakeGoogle

MiB = 1024 * 1024
VIEWER, ADMIN_ROLE, READER = ("roles/storage.objectViewer", "roles/storage.objectAdmin",
                              "roles/storage.legacyBucketReader")


pytestmark = pytest.mark.usefixtures("no_google_env")  # tests/fake_fixtures.py


def run(cli: Cli, *args: str) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return result


def gcs(cli: Cli, *args: str, env: str = "gcp") -> Any:
    """`provision gcs` on a real-project env (``--project`` given), JSON output."""
    return cli("gcs", "--env", env, "--project", PROJECT, "--json", *args)


def sa_email(sa_id: str) -> str:
    return f"{sa_id}@{PROJECT}.iam.gserviceaccount.com"


def bodies(fake: FakeGoogle, method: str, suffix: str) -> list[tuple[str, Any]]:
    """(path, JSON body) of the storage requests the admin credentials made with ``method`` whose path ends with
    ``suffix`` (verify's probes with the issued key are left out)."""
    return [(r["path"], r["body"]) for r in fake.requests if r["api"] == "storage" and r["method"] == method
            and r["path"].endswith(suffix) and r["caller"] == fake.admin_email]


def buckets_with(admin: GcsAdmin, prefix: str) -> list[str]:
    return sorted(b.name for b in admin.storage.list_buckets() if prefix in b.name)


def state_file(workdir: Path, env: str) -> Path:
    return workdir / ".provision" / f"{env}.json"


# ---- the sandbox: buckets only, said plainly ------------------------------------------------------------------
def test_sandbox_keyless_then_render_env(cli: Cli, gcs_admin: GcsAdmin, prefix: str, workdir: Path) -> None:
    gcs_admin.reset_log()
    result = run(cli, "gcs", "--prefix", prefix, "--project", "demo", "--env", "sandbox", "--keyless", "--json")
    doc = json.loads(result.stdout)
    buckets = [f"{prefix}-public", f"{prefix}-private"]
    skipped = {(c["kind"], c["detail"]) for c in doc["changes"] if c["action"] == "no change"}
    assert skipped == {("service_account", f"skipped: {SANDBOX_NOTE}"), ("bucket_binding", f"skipped: {SANDBOX_NOTE}")}
    assert [(c["action"], c["name"]) for c in doc["changes"] if c["kind"] == "bucket"] == [
        ("create", buckets[0]), ("update", buckets[0]), ("create", buckets[1]), ("update", buckets[1])]
    endpoint = gcs_admin.endpoint.endpoint_url
    assert read_grant()["grant"] == {
        "provider": "gcs", "storage_provider": "google", "access": "readonly", "buckets": buckets,
        "endpoint": endpoint.removeprefix("http://"), "endpoint_url": endpoint, "port": None, "secure": False,
        "region": "US", "auth": {"kind": "ambient"}}
    for name in buckets:  # the emulator dropped them from the insert; the provider saw that and set them
        config = gcs_admin.storage.get_bucket(name).iam_configuration
        assert config.uniform_bucket_level_access_enabled and config.public_access_prevention == "enforced"
    steps = [(e["method"], e["path"]) for e in gcs_admin.mutating()]
    assert steps == [("POST", "/storage/v1/b"), ("PATCH", f"/storage/v1/b/{buckets[0]}"),
                     ("POST", "/storage/v1/b"), ("PATCH", f"/storage/v1/b/{buckets[1]}")]
    assert {r["kind"] for r in read_grant()["resources"]} == {"bucket"}

    # Supervisely takes IAM roles for AWS S3 only: a keyless GCS grant is neither its storage nor a Links connection
    out = workdir / "sv"
    out.mkdir()
    refused = cli("render-env", "--env", "sandbox", "--out", str(out))
    assert refused.exit_code == 2, refused.output
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "Supervisely takes IAM roles for AWS S3 only" in refused.stderr and "--keyless" in refused.stderr
    assert list(out.iterdir()) == []


def test_sandbox_rerun_and_dry_run_make_no_mutating_request(cli: Cli, gcs_admin: GcsAdmin, prefix: str,
                                                             workdir: Path) -> None:
    args = ["gcs", "--prefix", prefix, "--env", "sandbox", "--keyless", "--full"]
    gcs_admin.reset_log()
    plan = json.loads(run(cli, *args, "--dry-run", "--json").stdout)
    assert [(c["action"], c["kind"]) for c in plan["changes"] if c["action"] != "no change"] == [
        ("create", "bucket"), ("create", "bucket")]
    assert gcs_admin.log() and gcs_admin.mutating() == []
    assert buckets_with(gcs_admin, prefix) == [] and not state_file(workdir, "sandbox").exists()
    run(cli, *args)
    for extra in ([], ["--dry-run"], ["--harden"]):
        gcs_admin.reset_log()
        doc = json.loads(run(cli, *args, *extra, "--json").stdout)
        assert doc["changed"] is False
        assert gcs_admin.log(), "the re-run looked at nothing"
        assert gcs_admin.mutating() == []


def test_sandbox_verify_says_there_is_nothing_true_to_probe(cli: Cli, gcs_admin: GcsAdmin, prefix: str) -> None:
    """A keyless grant has no key to probe from here: verify lists it as skipped and sends no request."""
    run(cli, "gcs", "--prefix", prefix, "--env", "sandbox", "--keyless")
    gcs_admin.reset_log()
    result = cli("verify", "--env", "sandbox", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    [grant] = doc["grants"]
    assert grant["name"] == prefix and grant["skipped"].startswith("ambient") and grant["rows"] == []
    assert doc["rows"] == []
    human = cli("verify", "--env", "sandbox")
    assert human.exit_code == 0 and f"grant {prefix}" in human.stderr and "skipped (ambient" in human.stderr
    assert gcs_admin.log() == []


@pytest.mark.parametrize("status, count", [(400, 10), (500, 10_000)])
def test_fault_at_every_mutating_step_converges_and_destroys_to_zero(cli: Cli, gcs_admin: GcsAdmin, prefix: str,
                                                                     workdir: Path, status: int, count: int) -> None:
    url = gcs_admin.endpoint.endpoint_url
    steps = 4  # per bucket: insert, then PATCH of the UBLA/PAP the emulator dropped (counted in the test above)
    for k in range(1, steps + 1):
        if status == 500 and k > 1:
            break  # a lasting 500 is retried until RETRY_SECONDS run out: one step shows it; 400 walks them all
        p = f"{prefix}k{k}"
        args = ["gcs", "--prefix", p, "--env", "sandbox", "--keyless", "--full"]
        sandbox.control(url, "faults", {"fail_mutating_at": k, "count": count, "status": status})
        try:
            failed = cli(*args)
        finally:
            sandbox.control(url, "faults", {})
        assert failed.exit_code in (3, 4), (k, failed.output)
        assert len(failed.stderr.strip().splitlines()) == 1, (k, failed.stderr)
        if k > 1:
            assert failed.exit_code == 4 and any(r["created"] for r in read_grant()["resources"])
        run(cli, *args)
        for name in (f"{p}-public", f"{p}-private"):
            config = gcs_admin.storage.get_bucket(name).iam_configuration
            assert config.uniform_bucket_level_access_enabled and config.public_access_prevention == "enforced", k
        gcs_admin.reset_log()
        assert json.loads(run(cli, *args, "--json").stdout)["changed"] is False, k
        assert gcs_admin.mutating() == [], k
        run(cli, "destroy", "--env", "sandbox", "--yes")
        assert buckets_with(gcs_admin, p) == [], k
        assert not state_file(workdir, "sandbox").exists(), k


def test_transient_server_error_is_retried_by_the_sdk(cli: Cli, gcs_admin: GcsAdmin, prefix: str) -> None:
    url = gcs_admin.endpoint.endpoint_url
    gcs_admin.reset_log()
    sandbox.control(url, "faults", {"fail_mutating_at": 1, "count": 1, "status": 503})
    try:
        run(cli, "gcs", f"{prefix}-one", "--env", "sandbox", "--keyless")
    finally:
        sandbox.control(url, "faults", {})
    assert [e["status"] for e in gcs_admin.mutating()][:2] == [503, 200]
    assert buckets_with(gcs_admin, prefix) == [f"{prefix}-one"]


def test_adopted_bucket_is_reported_hardened_only_when_asked_and_never_destroyed(
        cli: Cli, gcs_admin: GcsAdmin, prefix: str) -> None:
    adopted, created = f"{prefix}-legacy", f"{prefix}-new"
    gcs_admin.storage.create_bucket(adopted)
    gcs_admin.storage.bucket(adopted).blob("keep/me.jpg").upload_from_string(b"precious")
    args = ["gcs", adopted, created, "--env", "sandbox", "--keyless"]
    doc = json.loads(run(cli, *args, "--json").stdout)
    mine = [(c["action"], c["detail"]) for c in doc["changes"] if c["name"] == adopted]
    assert mine[0] == ("adopt", "exists; adopted (destroy never deletes it)")
    assert mine[1][0] == "no change" and "not hardened: uniform bucket-level access off" in mine[1][1]
    assert "--harden" in mine[1][1]
    assert not gcs_admin.storage.get_bucket(adopted).iam_configuration.uniform_bucket_level_access_enabled

    gcs_admin.reset_log()
    doc = json.loads(run(cli, *args, "--harden", "--json").stdout)
    assert [(e["method"], e["path"]) for e in gcs_admin.mutating()] == [("PATCH", f"/storage/v1/b/{adopted}")]
    config = gcs_admin.storage.get_bucket(adopted).iam_configuration
    assert config.uniform_bucket_level_access_enabled and config.public_access_prevention == "enforced"

    gcs_admin.storage.bucket(created).blob("data.bin").upload_from_string(b"x")
    gcs_admin.reset_log()
    refused = cli("destroy", "--env", "sandbox", "--yes")
    assert refused.exit_code == 2 and "--delete-data" in refused.stderr and created in refused.stderr
    assert gcs_admin.mutating() == []
    result = run(cli, "destroy", "--env", "sandbox", "--yes", "--delete-data")
    assert "left in place" in result.stderr and adopted in result.stderr
    assert buckets_with(gcs_admin, prefix) == [adopted]
    assert gcs_admin.storage.bucket(adopted).blob("keep/me.jpg").download_as_bytes() == b"precious"
    assert [(r["kind"], r["name"], r["created"]) for r in read_grant()["resources"]] == [("bucket", adopted, False)]


# ---- bad input: exit 2, one line, nothing asked of any cloud ----------------------------------------------------
SANDBOX_BAD = [
    (["ab", "--keyless"], "invalid bucket name 'ab'"),
    (["goog-data", "--keyless"], "must not begin with 'goog'"),
    (["my-google-pics", "--keyless"], "must not contain 'google'"),
    (["Upper-Case", "--keyless"], "may contain only lowercase"),
    (["b" * 64, "--keyless"], "is 64 characters long"),
    (["--prefix", "demo"], "the sandbox has no IAM"),
    (["--prefix", "demo", "--hmac"], "an HMAC key cannot be issued here"),
    (["--prefix", "demo", "--keyless", "--hmac"], "--hmac and --keyless are mutually exclusive"),
    (["dup-one", "dup-one", "--keyless"], "bucket names repeat"),
    (["--prefix", "demo", "x-bucket", "--keyless"], "give BUCKET names or --prefix, not both"),
    (["--prefix", "demo", "--keyless", "--readonly", "--full"], "--readonly and --full are mutually exclusive"),
    (["--prefix", "demo", "--keyless", "--location", "eu west"], "invalid --location 'eu west'"),
]


@pytest.mark.parametrize("args, message", SANDBOX_BAD)
def test_bad_input_in_the_sandbox(cli: Cli, gcs_admin: GcsAdmin, workdir: Path, args: list[str],
                                  message: str) -> None:
    gcs_admin.reset_log()
    result = cli("gcs", "--env", "sandbox", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert gcs_admin.log() == []
    assert not state_file(workdir, "sandbox").exists()


PROJECT_BAD = [
    (["--prefix", "demo"], "no --project given"),
    (["--prefix", "demo", "--project", "Bad_Project"], "invalid --project 'Bad_Project'"),
    (["--prefix", "demo", "--project", PROJECT, "--service-account", "abc"], "invalid --service-account 'abc'"),
    (["--prefix", "demo", "--project", PROJECT, "--service-account", "1provision"], "invalid --service-account"),
    (["--prefix", "demo", "--project", PROJECT, "--service-account", "provision-"], "invalid --service-account"),
    (["--prefix", "demo", "--project", PROJECT, "--service-account", "a" * 31], "6–30 characters"),
    (["--prefix", "demo", "--project", PROJECT, "--service-account", "someone@gmail.com"], "not a service-account"),
    (["--prefix", "demo", "--project", PROJECT, "--hmac", "--keyless"], "--hmac and --keyless are mutually"),
    (["--prefix", "Demo", "--project", PROJECT], "invalid --prefix 'Demo'"),
]


@pytest.mark.parametrize("args, message", PROJECT_BAD)
def test_bad_input_for_a_real_project(cli: Cli, google: FakeGoogle, workdir: Path, args: list[str],
                                      message: str) -> None:
    result = cli("gcs", "--env", "gcp", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert google.requests == []  # not even a token was asked for
    assert not state_file(workdir, "gcp").exists()


# ---- a real project, through the transport fake ------------------------------------------------------------------
def test_key_file_grant_bodies_and_outputs(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin, prefix: str,
                                           workdir: Path) -> None:
    result = gcs(cli, "--prefix", prefix, "--full")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    email = sa_email(f"provision-{prefix}-rw")
    member = f"serviceAccount:{email}"
    buckets = [f"{prefix}-public", f"{prefix}-private"]
    rows = doc["verify"]  # probed with the issued key; the fake enforces bucket IAM per caller
    assert rows and all(r["ok"] for r in rows)
    assert {(r["operation"], r["expected"]) for r in rows} >= {
        ("objects.create", "allow"), ("buckets.get", "allow"), ("buckets.list", "deny"),
        ("buckets.setIamPolicy", "deny")}

    # the key file: 0600 in a 0700 directory, absolute path in the grant, never printed
    path = Path(read_grant("gcp")["grant"]["auth"]["path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = json.loads(path.read_text())
    assert key["client_email"] == email and key["type"] == "service_account"
    assert doc["grant"] == {"provider": "gcs", "storage_provider": "google", "access": "full", "buckets": buckets,
                            "endpoint": google.http_url.removeprefix("http://"), "endpoint_url": google.http_url,
                            "port": None, "secure": False, "region": "US",
                            "auth": {"kind": "key_file", "path": str(path)}}
    secret_line = key["private_key"].splitlines()[5]  # random key material (line 1 starts with a fixed prefix)
    assert secret_line not in result.stdout + result.stderr

    # bodies that left our code
    iam = [(r["method"], r["body"]) for r in google.requests if r["api"] == "iam" and r["mutating"]]
    assert [m for m, _ in iam] == ["CreateServiceAccount", "CreateServiceAccountKey"]
    assert iam[0][1]["account_id"] == f"provision-{prefix}-rw" and iam[0][1]["name"] == f"projects/{PROJECT}"
    assert iam[1][1]["private_key_type"] == 2  # TYPE_GOOGLE_CREDENTIALS_FILE
    inserts = bodies(google, "POST", "/storage/v1/b")
    assert [body["name"] for _, body in inserts if not body["name"].startswith("provision-verify-")] == buckets
    for _, body in inserts:
        assert body["iamConfiguration"] == {"uniformBucketLevelAccess": {"enabled": True},
                                            "publicAccessPrevention": "enforced"}
        assert body["location"] == "US"
    sets = [(p, b) for p, b in bodies(google, "PUT", "/iam") if b["bindings"] and member in str(b)]
    assert [p for p, _ in sets] == [f"/storage/v1/b/{b}/iam" for b in buckets]
    for _, body in sets:
        assert sorted(body["bindings"], key=lambda b: b["role"]) == [
            {"role": READER, "members": [member]}, {"role": ADMIN_ROLE, "members": [member]}]
        assert body["version"] == 3 and body["etag"] == "CAE="  # the etag the read returned, sent back
    reads = [r for r in google.requests if r["method"] == "GET" and r["path"].endswith("/iam")]
    assert reads and all("optionsRequestedPolicyVersion=3" in r["query"] for r in reads)
    iam_paths = {r["path"] for r in google.requests if "/iam" in r["path"] and r["api"] == "storage"}
    assert iam_paths <= {f"/storage/v1/b/{b}/iam" for b in buckets}  # bucket-scoped, never the project
    for name in buckets:
        assert google.bucket_policy(name)["bindings"] == sorted(sets[0][1]["bindings"], key=lambda b: b["role"])

    # rendered: the full key file is the instance storage, mounted read-only by absolute path, its contents nowhere
    out = workdir / "sv"
    out.mkdir()
    run(cli, "render-env", "--env", "gcp", "--out", str(out))
    env_text = (out / ".env").read_text()
    assert "STORAGE_CREDENTIALS_PATH=/gcs.json" in env_text and "STORAGE_PROVIDER=google" in env_text
    assert f"STORAGE_ENDPOINT={read_grant('gcp')['grant']['endpoint']}" in env_text
    override = yaml.safe_load((out / "docker-compose.override.yml").read_text())
    assert override["services"]["http-storage"]["volumes"] == [
        {"type": "bind", "source": str(path), "target": "/gcs.json", "read_only": True}]
    assert not (out / "remote_links.yml").exists()  # the storage is no Links connection
    run(cli, "render-env", "--env", "gcp", "--out", str(out), "--target", "cvat")
    body = json.loads((out / "cvat-cloudstorage.json").read_text())
    assert (body["provider_type"], body["credentials_type"]) == ("GOOGLE_CLOUD_STORAGE", "KEY_FILE_PATH")
    for name in (".env", "docker-compose.override.yml", "cvat-cloudstorage.json"):
        assert secret_line not in (out / name).read_text()

    # a re-run: no new key, no mutating request anywhere
    key_ids = google.user_keys(email)
    google.reset()
    gcs_admin.reset_log()
    again = gcs(cli, "--prefix", prefix, "--full")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["changed"] is False
    assert google.requests and google.mutating() == [] and gcs_admin.mutating() == []
    assert google.user_keys(email) == key_ids and len(key_ids) == 1
    assert path.read_text() == json.dumps(key)


def test_rotate_replaces_the_key_file_then_deletes_the_old_key(cli: Cli, google: FakeGoogle, prefix: str,
                                                               workdir: Path) -> None:
    from google.auth.exceptions import RefreshError
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    assert gcs(cli, "--prefix", prefix).exit_code == 0
    out = workdir / "sv"
    out.mkdir()
    run(cli, "render-env", "--env", "gcp", "--out", str(out))
    path = Path(read_grant("gcp")["grant"]["auth"]["path"])
    old = json.loads(path.read_text())
    email = old["client_email"]
    google.reset()
    result = gcs(cli, "--prefix", prefix, "--rotate")
    assert result.exit_code == 0, result.output
    new_path = Path(read_grant("gcp")["grant"]["auth"]["path"])
    new = json.loads(new_path.read_text())
    assert new["private_key_id"] != old["private_key_id"] and stat.S_IMODE(new_path.stat().st_mode) == 0o600
    # one file per key: the old file is gone with its key, and the re-rendered override mounts the new path, so
    # `supervisely up -d` recreates http-storage instead of leaving it on the deleted key's inode
    assert not path.exists() and new_path != path
    override = yaml.safe_load((out / "docker-compose.override.yml").read_text())
    mounts = {v["target"]: v["source"] for v in override["services"]["http-storage"]["volumes"]}
    assert mounts[f"/gcs-{prefix}.json"] == str(new_path)  # a read-only key: the Links connection named after it
    links = yaml.safe_load((out / "remote_links.yml").read_text())[prefix]
    assert links["credentials_path"] == f"/gcs-{prefix}.json"
    steps = [(r["method"], r["body"]["name"].rsplit("/", 1)[-1]) for r in google.mutating("iam")]
    assert steps == [("CreateServiceAccountKey", email), ("DeleteServiceAccountKey", old["private_key_id"])]
    assert json.loads(result.stdout)["verify"]  # the new key was probed before the old one went
    assert google.user_keys(email) == [new["private_key_id"]]
    assert [r["name"] for r in read_grant("gcp")["resources"] if r["kind"] == "sa_key"] == [new["private_key_id"]]
    with pytest.raises(RefreshError):  # the old key can no longer mint a token
        service_account.Credentials.from_service_account_info(old, scopes=["https://www.googleapis.com/auth/"
                                                                           "cloud-platform"]).refresh(Request())
    assert old["private_key"].splitlines()[5] not in result.stdout + result.stderr
    assert new["private_key"].splitlines()[5] not in result.stdout + result.stderr


def test_org_policy_forbidding_keys_names_the_ways_out(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                                      prefix: str, workdir: Path) -> None:
    google.forbid_keys = True
    result = cli("gcs", "--env", "gcp", "--project", PROJECT, "--prefix", prefix)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--hmac" in lines[0] and "--keyless" in lines[0], result.stderr
    assert "organisation policy" in lines[0]
    kinds = [(r["kind"], r["created"]) for r in read_grant("gcp")["resources"]]
    assert kinds.count(("bucket", True)) == 2 and ("service_account", True) in kinds
    assert kinds.count(("bucket_binding", True)) == 2
    assert not list((workdir / ".provision" / "keys").glob("gcp-*.json"))

    result = gcs(cli, "--prefix", prefix, "--keyless")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["grant"]["auth"] == {"kind": "ambient"} and doc["grant"]["storage_provider"] == "google"
    assert any("attach this service account" in c["detail"] for c in doc["changes"])
    email = sa_email(f"provision-{prefix}-ro")
    assert google.user_keys(email) == []

    run(cli, "destroy", "--env", "gcp", "--yes")
    assert email not in google.service_accounts
    assert buckets_with(gcs_admin, prefix) == []
    assert not state_file(workdir, "gcp").exists()


def test_hmac_grant_and_its_destroy(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin, prefix: str,
                                    workdir: Path) -> None:
    # --no-verify: the S3-interoperable endpoint, where an HMAC key works, has no emulator
    result = gcs(cli, "--prefix", prefix, "--full", "--hmac", "--no-verify")
    assert result.exit_code == 0, result.output
    email = sa_email(f"provision-{prefix}-rw")
    grant = read_grant("gcp")["grant"]
    access_id, secret = grant["auth"]["access_key"], grant["auth"]["secret_key"]
    assert access_id.startswith("GOOG1E") and access_id in google.hmac_keys
    assert {k: grant[k] for k in ("provider", "storage_provider", "endpoint", "endpoint_url", "port", "secure")} == {
        "provider": "gcs", "storage_provider": "minio", "endpoint": "storage.googleapis.com", "endpoint_url": None,
        "port": 443, "secure": True}
    assert secret not in result.stdout + result.stderr
    assert json.loads(result.stdout)["grant"]["auth"]["secret_key"].startswith("****")
    created = [r for r in google.requests if r["method"] == "POST" and r["path"].endswith("/hmacKeys")]
    assert [parse_qs(r["query"])["serviceAccountEmail"] for r in created] == [[email]]
    assert created[0]["path"] == f"/storage/v1/projects/{PROJECT}/hmacKeys"
    assert google.user_keys(email) == [] and not (workdir / ".provision" / "keys").exists()

    google.reset()
    again = gcs(cli, "--prefix", prefix, "--full", "--hmac")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    assert google.mutating() == [] and len(google.hmac_keys) == 1

    refused = cli("verify", "--env", "gcp")
    assert refused.exit_code == 2 and "S3-interoperable" in refused.stderr

    # rendered as Supervisely's S3-compatible provider on storage.googleapis.com, and as an S3 storage for CVAT
    out = workdir / "sv"
    out.mkdir()
    run(cli, "render-env", "--env", "gcp", "--out", str(out))
    env = (out / ".env").read_text()
    for line in ("STORAGE_PROVIDER=minio", "STORAGE_ENDPOINT=storage.googleapis.com", "STORAGE_PORT=443",
                 f"STORAGE_ACCESS_KEY={access_id}", f"STORAGE_SECRET_KEY={secret}"):
        assert line + "\n" in env
    assert "STORAGE_CREDENTIALS_PATH" not in env
    # the full HMAC key is the instance storage: no Links connection, nothing to mount
    assert not (out / "remote_links.yml").exists() and not (out / "docker-compose.override.yml").exists()
    # CVAT's S3 "key" holds at most 40 characters and a GCS HMAC access id has 61: refused, pointing at a key file
    cvat = cli("render-env", "--env", "gcp", "--out", str(out), "--target", "cvat")
    assert cvat.exit_code == 2 and len(cvat.stderr.strip().splitlines()) == 1
    assert "at most 40" in cvat.stderr and "key-file grant" in cvat.stderr and secret not in cvat.output
    assert not (out / "cvat-cloudstorage.json").exists()

    google.reset()
    run(cli, "destroy", "--env", "gcp", "--yes")
    steps = [(r["api"], r["method"], r["path"].rsplit("/", 2)[-2:]) for r in google.mutating()]
    assert steps == [
        ("storage", "PUT", ["hmacKeys", access_id]), ("storage", "DELETE", ["hmacKeys", access_id]),
        ("storage", "PUT", [f"{prefix}-private", "iam"]), ("storage", "PUT", [f"{prefix}-public", "iam"]),
        ("iam", "DeleteServiceAccount", ["serviceAccounts", email]),
        ("storage", "DELETE", ["b", f"{prefix}-private"]), ("storage", "DELETE", ["b", f"{prefix}-public"])]
    deactivate = next(r for r in google.requests if r["method"] == "PUT" and "hmacKeys" in r["path"])
    assert deactivate["body"]["state"] == "INACTIVE"
    assert google.hmac_keys == {} and email not in google.service_accounts
    assert buckets_with(gcs_admin, prefix) == []


def test_verify_catches_an_over_broad_binding(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                             prefix: str) -> None:
    assert gcs(cli, "--prefix", prefix).exit_code == 0
    ok = cli("verify", "--env", "gcp", "--json")
    assert ok.exit_code == 0, ok.output
    rows = json.loads(ok.stdout)["rows"]
    assert ("objects.create", "deny") in {(r["operation"], r["actual"]) for r in rows}
    member = f"serviceAccount:{sa_email(f'provision-{prefix}-ro')}"
    bucket = gcs_admin.storage.bucket(f"{prefix}-private")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": ADMIN_ROLE, "members": {member}})
    bucket.set_iam_policy(policy)
    result = cli("verify", "--env", "gcp")
    assert result.exit_code == 5
    assert f"objects.create on {prefix}-private" in " ".join(result.stderr.split())

    fixed = gcs(cli, "--prefix", prefix)  # the re-run takes the extra role away again
    assert fixed.exit_code == 0, fixed.output
    roles = {b["role"] for b in google.bucket_policy(f"{prefix}-private")["bindings"] if member in b["members"]}
    assert roles == {VIEWER, READER}


def test_access_change_and_destroy_touch_only_our_member(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                                         prefix: str, workdir: Path) -> None:
    adopted, created = f"{prefix}-legacy", f"{prefix}-new"
    sa_id = f"{prefix}-vision"
    email = sa_email(sa_id)
    google.add_service_account(email)  # someone else's account: adopted, never deleted
    gcs_admin.storage.create_bucket(adopted)
    bucket = gcs_admin.storage.bucket(adopted)
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": VIEWER, "members": {"user:alice@example.com"}})
    policy.etag = "BwYpCustom="
    bucket.set_iam_policy(policy)
    args = [adopted, created, "--service-account", sa_id]
    assert gcs(cli, *args).exit_code == 0
    member = f"serviceAccount:{email}"
    put = [b for p, b in bodies(google, "PUT", f"/b/{adopted}/iam") if member in str(b)]
    assert put[0]["etag"] == "BwYpCustom="
    assert {"role": VIEWER, "members": sorted(["user:alice@example.com", member])} in put[0]["bindings"]
    key = json.loads(Path(read_grant("gcp")["grant"]["auth"]["path"]).read_text())

    google.reset()
    result = gcs(cli, *args, "--full", "--yes")  # widening a deployed grant needs --yes without a terminal
    assert result.exit_code == 0, result.output
    assert [r["method"] for r in google.mutating("iam")] == []  # same account, same key
    assert json.loads(Path(read_grant("gcp")["grant"]["auth"]["path"]).read_text()) == key
    for name in (adopted, created):
        bindings = {b["role"]: b["members"] for b in google.bucket_policy(name)["bindings"]}
        assert member in bindings[ADMIN_ROLE] and member in bindings[READER]
        assert member not in bindings.get(VIEWER, [])
    assert bindings_of(google, adopted)[VIEWER] == ["user:alice@example.com"]

    result = run(cli, "destroy", "--env", "gcp", "--yes")
    assert "left in place" in result.stderr and email in result.stderr
    assert email in google.service_accounts and google.user_keys(email) == []
    assert bindings_of(google, adopted) == {VIEWER: ["user:alice@example.com"]}
    assert buckets_with(gcs_admin, prefix) == [adopted]
    assert not list((workdir / ".provision" / "keys").glob("gcp-*.json"))
    kept = {(r["kind"], r["name"]) for r in read_grant("gcp")["resources"]}
    assert kept == {("bucket", adopted), ("service_account", email)}  # our member was removed: its record too


def test_new_service_account_is_bound_once_iam_knows_it(cli: Cli, google: FakeGoogle, prefix: str) -> None:
    email = sa_email(f"{prefix}-sa")
    google.unknown_for[email] = 2  # IAM is eventually consistent: the first two writes naming it are refused
    result = gcs(cli, f"{prefix}-data", "--service-account", f"{prefix}-sa", "--no-verify")
    assert result.exit_code == 0, result.output
    writes = [r["status"] for r in google.requests if r["method"] == "PUT" and r["path"].endswith("/iam")]
    assert writes == [400, 400, 200]
    assert bindings_of(google, f"{prefix}-data") == {READER: [f"serviceAccount:{email}"],
                                                     VIEWER: [f"serviceAccount:{email}"]}
    assert [(r["kind"], r["created"]) for r in read_grant("gcp")["resources"]].count(("bucket_binding", True)) == 1


def test_a_policy_changed_under_us_is_read_again_and_merged(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                                            prefix: str) -> None:
    name = f"{prefix}-data"

    def concurrent_writer(bucket: str) -> None:  # someone grants bob between our read and our write
        target = gcs_admin.storage.bucket(bucket)
        policy = target.get_iam_policy(requested_policy_version=3)
        policy.bindings.append({"role": VIEWER, "members": {"user:bob@example.com"}})
        policy.etag = "BwBobWasHere="
        target.set_iam_policy(policy)

    google.on_set_iam = concurrent_writer
    result = gcs(cli, name, "--service-account", f"{prefix}-sa", "--no-verify")
    assert result.exit_code == 0, result.output
    writes = [(r["status"], r["body"]["etag"]) for r in google.requests
              if r["method"] == "PUT" and r["path"].endswith("/iam")]
    assert writes == [(412, "CAE="), (200, "BwBobWasHere=")]
    member = f"serviceAccount:{sa_email(f'{prefix}-sa')}"
    assert bindings_of(google, name) == {READER: [member], VIEWER: sorted(["user:bob@example.com", member])}


def test_switching_to_hmac_retires_the_key_and_its_file(cli: Cli, google: FakeGoogle, prefix: str,
                                                         workdir: Path) -> None:
    assert gcs(cli, "--prefix", prefix).exit_code == 0
    path = Path(read_grant("gcp")["grant"]["auth"]["path"])
    old = json.loads(path.read_text())["private_key_id"]
    google.reset()
    result = gcs(cli, "--prefix", prefix, "--hmac", "--no-verify")
    assert result.exit_code == 0, result.output
    steps = [(r["api"], r["method"]) for r in google.mutating()]
    assert steps == [("storage", "POST"), ("iam", "DeleteServiceAccountKey")]  # the new credential first
    assert google.mutating("iam")[0]["path"].endswith(f"/keys/{old}")
    assert google.user_keys(sa_email(f"provision-{prefix}-ro")) == [] and not path.exists()
    assert {r["kind"] for r in read_grant("gcp")["resources"]} == {"bucket", "service_account", "bucket_binding",
                                                                   "hmac_key"}


def test_keyless_binds_the_vms_existing_account(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                               prefix: str) -> None:
    email = "123456789-compute@developer.gserviceaccount.com"  # Compute Engine's default account
    missing = gcs(cli, "--prefix", prefix, "--keyless", "--service-account", email)
    assert missing.exit_code == 3 and "does not exist" in missing.stderr
    google.add_service_account(email)
    result = gcs(cli, "--prefix", prefix, "--keyless", "--service-account", email)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert ("adopt", "service_account", email) in {(c["action"], c["kind"], c["name"]) for c in doc["changes"]}
    assert doc["grant"]["auth"] == {"kind": "ambient"} and doc["verify"] == []
    assert [r["method"] for r in google.mutating("iam")] == []
    member = f"serviceAccount:{email}"
    for name in (f"{prefix}-public", f"{prefix}-private"):
        assert bindings_of(google, name) == {READER: [member], VIEWER: [member]}
    lookups = {r["path"] for r in google.requests if r["method"] == "GetServiceAccount"}
    assert lookups == {f"projects/-/serviceAccounts/{email}"}  # it may live in another project
    run(cli, "destroy", "--env", "gcp", "--yes")
    assert email in google.service_accounts and buckets_with(gcs_admin, prefix) == []


def test_status_finds_a_deleted_key(cli: Cli, google: FakeGoogle, prefix: str) -> None:
    assert gcs(cli, "--prefix", prefix).exit_code == 0
    clean = json.loads(run(cli, "status", "--env", "gcp", "--json").stdout)
    assert clean["in_sync"] is True
    email = sa_email(f"provision-{prefix}-ro")
    (key_id,) = google.user_keys(email)
    del google.keys[key_id]  # someone deleted the key in the console
    google.reset()
    drifted = cli("status", "--env", "gcp", "--json")
    assert drifted.exit_code == 6, drifted.output  # drift found
    rows = json.loads(drifted.stdout)["rows"]
    assert google.mutating() == []
    assert [(r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows] == [
        ("sa_key", email, "credential missing or unusable")]


def test_no_google_credentials_is_a_refusal(cli: Cli, workdir: Path) -> None:
    result = cli("gcs", "--env", "gcp", "--project", PROJECT, "--prefix", "demo")
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Google credentials found" in lines[0] and "--env sandbox" in lines[0]
    assert not state_file(workdir, "gcp").exists()


def bindings_of(google: FakeGoogle, bucket: str) -> dict[str, list[str]]:
    return {b["role"]: sorted(b["members"]) for b in google.bucket_policy(bucket)["bindings"]}


# ---- data commands on a GCS sandbox env ------------------------------------------------------------------------
def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_migrate_into_gcs_then_rerun_uploads_nothing(cli: Cli, gcs_admin: GcsAdmin, prefix: str,
                                                     workdir: Path) -> None:
    run(cli, "gcs", "--prefix", prefix, "--env", "sandbox", "--keyless")
    data_path = workdir / "supervisely-data"
    tree = {(f"{prefix}-public", "videos/big clip.mp4"): os.urandom(9 * MiB),  # > 8 MiB: a resumable upload
            (f"{prefix}-public", "images/фото 1.jpg"): os.urandom(50_000),
            (f"{prefix}-public", "images/empty.jpg"): b"",
            (f"{prefix}-private", "workspace/1/ann.json"): b'{"a": 1}\n',
            (f"{prefix}-private", "日本語/ファイル.txt"): "こんにちは\n".encode()}
    for (bucket, key), data in tree.items():
        path = data_path / "storage" / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    total = sum(len(d) for d in tree.values())
    assert (doc["uploaded"], doc["uploaded_bytes"], doc["failed"]) == (len(tree), total, 0)
    for (bucket, key), data in tree.items():
        blob = gcs_admin.storage.bucket(bucket).get_blob(key)
        assert md5(blob.download_as_bytes()) == md5(data), key
    assert gcs_admin.storage.bucket(f"{prefix}-public").get_blob("images/фото 1.jpg").content_type == "image/jpeg"

    cache = Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.migrate-cache.sqlite"
    for remembered in (True, False):
        if not remembered:
            cache.unlink()
        gcs_admin.reset_log()
        result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path), "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert (doc["uploaded"], doc["uploaded_bytes"], doc["skipped"]) == (0, 0, len(tree))
        assert gcs_admin.mutating() == []


LINK_KEYS = ["a/1.jpg", "a/2.PNG", "a/3.txt", "a/sub/4.jpeg", "b/5.jpg", "ü ñ/6 x.jpg", "top.png"]


def test_links_file_lists_google_urls_in_key_order(cli: Cli, gcs_admin: GcsAdmin, prefix: str,
                                                   workdir: Path) -> None:
    run(cli, "gcs", "--prefix", prefix, "--env", "sandbox", "--keyless")
    public, private = f"{prefix}-public", f"{prefix}-private"
    for key in reversed(LINK_KEYS):
        gcs_admin.storage.bucket(public).blob(key).upload_from_string(b"x")
    gcs_admin.storage.bucket(private).blob("p/9.jpg").upload_from_string(b"x")
    result = run(cli, "links", "--env", "sandbox", "--bucket", public)
    assert result.stdout == "".join(f"google://{public}/{k}\n" for k in sorted(LINK_KEYS))
    result = run(cli, "links", "--env", "sandbox", "--bucket", public, "--prefix", "a/", "--ext", ".jpg,.PNG")
    assert result.stdout == f"google://{public}/a/1.jpg\ngoogle://{public}/a/2.PNG\n"
    out = workdir / "links.txt"
    run(cli, "links", "--env", "sandbox", "--ext", ".jpg", "--out", str(out))
    assert out.read_text(encoding="utf-8") == "".join(
        f"google://{public}/{k}\n" for k in ("a/1.jpg", "b/5.jpg", "ü ñ/6 x.jpg")) + f"google://{private}/p/9.jpg\n"


def image(kind: str, size: tuple[int, int], orientation: int | None = None) -> bytes:
    img = Image.effect_noise(size, 50).convert("RGB")
    exif = Image.Exif()
    if orientation is not None:
        exif[274] = orientation
    out = io.BytesIO()
    img.save(out, kind, exif=exif.tobytes() if len(exif) else b"")
    return out.getvalue()


def test_manifest_reads_image_sizes_from_gcs(cli: Cli, gcs_admin: GcsAdmin, prefix: str, workdir: Path) -> None:
    bucket = f"{prefix}-data"
    run(cli, "gcs", bucket, "--env", "sandbox", "--keyless")
    files = {"photos/wide.jpg": image("JPEG", (1200, 800)), "photos/turned.jpg": image("JPEG", (1200, 800), 6),
             "photos/sub/scan.png": image("PNG", (640, 480)), "photos/notes.txt": b"not an image"}
    for key, data in files.items():
        gcs_admin.storage.bucket(bucket).blob(key).upload_from_string(data)
    result = cli("manifest", "--env", "sandbox", "--prefix", "photos", "--out", "m.jsonl", "--upload")
    assert result.exit_code == 0, result.output
    lines = (workdir / "m.jsonl").read_text().splitlines()
    assert lines[:2] == ['{"version":"1.1"}', '{"type":"images"}']
    entries = [json.loads(line) for line in lines[2:]]
    assert [(e["name"], e["extension"], e["width"], e["height"]) for e in entries] == [
        ("sub/scan", ".png", 640, 480), ("turned", ".jpg", 800, 1200), ("wide", ".jpg", 1200, 800)]
    uploaded = gcs_admin.storage.bucket(bucket).blob("photos/manifest.jsonl").download_as_bytes()
    assert uploaded.decode().splitlines() == lines


def test_a_lost_create_answer_is_retried_and_the_bucket_stays_tracked(cli: Cli, gcs_admin: GcsAdmin, prefix: str,
                                                                      workdir: Path) -> None:
    """The emulator creates the bucket but its answer is lost (503 after the fact): the SDK retries, gets 409, and
    the bucket — visible to these credentials — is kept as created, so destroy still removes it."""
    url = gcs_admin.endpoint.endpoint_url
    gcs_admin.reset_log()
    sandbox.control(url, "faults", {"fail_mutating_at": 1, "count": 1, "status": 503, "after": True})
    try:
        result = cli("gcs", "--prefix", prefix, "--env", "sandbox", "--keyless")
    finally:
        sandbox.control(url, "faults", {})
    assert result.exit_code == 0, result.output
    inserts = [e for e in gcs_admin.log() if e["method"] == "POST" and e["path"] == "/storage/v1/b"]
    assert [e["status"] for e in inserts][:2] == [503, 409]
    assert ("bucket", f"{prefix}-public", True) in {(r["kind"], r["name"], r["created"])
                                                    for r in read_grant()["resources"]}
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert buckets_with(gcs_admin, prefix) == []


# ---- pure parts: the profile's GCS fields, the probe table, the SDK's retry budget ----------------------------
OPTION_BAD = [
    ({"hmac": True, "keyless": True}, False, "--hmac and --keyless are mutually exclusive"),
    ({"keyless": True, "location": "eu west"}, True, "invalid --location 'eu west'"),
    ({"project": PROJECT, "location": "-EU"}, False, "invalid --location '-EU'"),
    ({}, True, f"{SANDBOX_NOTE}; a JSON key file cannot be issued here"),
    ({"hmac": True}, True, f"{SANDBOX_NOTE}; an HMAC key cannot be issued here"),
    ({"keyless": True, "project": "Demo"}, True, "invalid --project 'Demo'"),
    ({}, False, "no --project given"),
    ({"project": "proj"}, False, "invalid --project 'proj'"),
    ({"project": PROJECT, "service_account": "abc"}, False, "invalid --service-account 'abc'"),
    ({"project": PROJECT, "service_account": "someone@gmail.com"}, False, "not a service-account email"),
]


@pytest.mark.parametrize("fields, in_sandbox, message", OPTION_BAD)
def test_options_refuse_with_one_line_naming_the_rule(fields: dict[str, Any], in_sandbox: bool,
                                                      message: str) -> None:
    with pytest.raises(BadInput) as refused:
        GcsOptions(**fields).check(in_sandbox)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("fields, in_sandbox", [
    ({"keyless": True}, True), ({"keyless": True, "project": "demo", "location": "europe-west1"}, True),
    ({"project": PROJECT}, False), ({"project": "example.com:proj-test", "hmac": True}, False),
    ({"project": PROJECT, "service_account": "123-compute@developer.gserviceaccount.com", "keyless": True}, False),
])
def test_options_accept(fields: dict[str, Any], in_sandbox: bool) -> None:
    GcsOptions(**fields).check(in_sandbox)


def test_options_name_the_service_account() -> None:
    plain = GcsOptions(project=PROJECT)
    assert plain.bucket_location == "US" and not plain.by_email
    assert plain.account_id("acme", Access.readonly) == "provision-acme-ro"
    assert plain.account_id("Very_Long.Bucket-Name-2024", Access.full) == "provision-very-long-bucket-rw"
    assert plain.account_email("provision-acme-ro") == sa_email("provision-acme-ro")
    scoped = GcsOptions(project="example.com:proj-test", service_account="given-id")
    assert scoped.account_id("acme", Access.full) == "given-id"
    assert scoped.account_email("given-id") == "given-id@proj-test.example.com.iam.gserviceaccount.com"
    vm = GcsOptions(project=PROJECT, service_account="123-compute@developer.gserviceaccount.com", location="EU")
    assert vm.by_email and vm.bucket_location == "EU"
    assert vm.account_id("acme", Access.readonly) == "123-compute"
    assert vm.account_email("123-compute") == "123-compute@developer.gserviceaccount.com"
    with pytest.raises(ValidationError, match="region"):  # only the GCS fields
        GcsOptions(region="us-east-1")  # type: ignore[call-arg]


def test_probe_outcomes() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError
    from google.api_core.exceptions import Forbidden, NotFound, Unauthorized
    from google.auth.exceptions import RefreshError

    assert [json_api_outcome(e) for e in (Forbidden("no"), Unauthorized("no"), NotFound("gone"),
                                          RefreshError("bad key"), ValueError("x"))] == [
        "deny", "deny", "error: 404", "error: RefreshError", None]

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert [xml_api_outcome(e) for e in (client_error("AccessDenied", 403), client_error("Forbidden", 400),
                                         client_error("NoSuchKey", 404), EndpointConnectionError(endpoint_url="x"),
                                         ValueError("x"))] == [
        "deny", "deny", "error: NoSuchKey", "error: EndpointConnectionError", None]


@pytest.mark.parametrize("make_retry, error", [
    (sdk.iam_retry, "ServiceUnavailable"), (sdk.storage_retry, "ConnectionError")])
def test_sdk_attempts_cap_each_retried_call(monkeypatch: pytest.MonkeyPatch, make_retry: Any, error: str) -> None:
    import requests
    from google.api_core.exceptions import ServiceUnavailable

    failure = {"ServiceUnavailable": ServiceUnavailable("down"), "ConnectionError": requests.ConnectionError("x")}
    calls: list[int] = []

    def flaky(fail: int) -> str:
        calls.append(1)
        if len(calls) <= fail:
            raise failure[error]
        return "ok"

    monkeypatch.delenv(SDK_ATTEMPTS_ENV, raising=False)
    retry = make_retry()
    assert retry(flaky)(3) == "ok" and len(calls) == 4  # unset: only the time budget bounds the retries
    monkeypatch.setenv(SDK_ATTEMPTS_ENV, "2")
    for _ in range(2):  # each call counts its own attempts, also through the same retry object
        calls.clear()
        with pytest.raises(type(failure[error])):
            retry(flaky)(3)
        assert len(calls) == 2
    calls.clear()
    assert retry(flaky)(1) == "ok" and len(calls) == 2
    monkeypatch.setenv(SDK_ATTEMPTS_ENV, "1")
    calls.clear()
    with pytest.raises(type(failure[error])):
        make_retry()(flaky)(1)
    assert len(calls) == 1


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_sdk_attempts_must_be_a_whole_number(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(SDK_ATTEMPTS_ENV, value)
    with pytest.raises(BadInput, match=SDK_ATTEMPTS_ENV):
        sdk.sdk_attempts()


def test_sdk_errors_are_described_on_one_line() -> None:
    from google.api_core.exceptions import Forbidden, RetryError

    denied = Forbidden("POST http://x/b: caller may not\nsecond line")
    assert sdk.describe(denied) == "403 POST http://x/b: caller may not"
    assert sdk.describe(RetryError("Timeout of 15.0s exceeded", denied)) == (
        "Timeout of 15.0s exceeded, last exception: 403 POST http://x/b: caller may not")
    assert sdk.describe(ValueError("")) == "ValueError"
