"""The verify probe tables of every provider: the exact rows for read-only and full grants (built without any
request), a run of each on the sandbox (S3 on the enforcing moto, Azure on Azurite, GCS key files through
`tests.gcp_fake.FakeGoogle`) where every row is ok, and the concurrent runner (`run_probes`)."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from unittest.mock import MagicMock

import pytest
from botocore.exceptions import ClientError

from provision.errors import CloudRefused
from provision.models import Access, Grant, KeyFile
from provision.providers.base import Probe, run_concurrently, run_probes
from tests.conftest import Admin, AzureAdmin, Cli, GcsAdmin, read_state
from tests.gcp_fake import FakeGoogle
from tests.test_gcs import PROJECT, gcs

pytestmark = pytest.mark.usefixtures("no_google_env")  # tests/fake_fixtures.py

Row = tuple[str, str, str]
TOKEN = "0123456789"


def rows_of(table: Any) -> list[Row]:
    """(operation, target, expected) of each probe of a table."""
    return [(p.operation, p.target, "allow" if p.allowed else "deny") for p in table]


def ran(doc: dict[str, Any]) -> list[Row]:
    """(operation, target, expected) of the rows `provision verify --json` printed, each run's random token
    replaced by `TOKEN`; asserts every row is ok."""
    rows = doc["rows"]
    assert doc["ok"] is True and all(r["ok"] and r["expected"] == r["actual"] for r in rows), \
        [r for r in rows if not r["ok"]]
    token = re.compile(r"(provision-verify[-/])[0-9a-f]{10}")
    return [(r["operation"], token.sub(rf"\g<1>{TOKEN}", r["target"]), r["expected"]) for r in rows]


def granted(env: str = "sandbox") -> dict[str, Any]:
    """The stored Grant of the environment's one grant (state v2: ``grants.<name>.grant``)."""
    doc = read_state(env)
    if "grants" in doc:
        (record,) = doc["grants"].values()
        doc = record
    return doc["grant"]  # type: ignore[no-any-return]


def verify_json(cli: Cli, env: str) -> dict[str, Any]:
    result = cli("verify", "--env", env, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# ---- S3 ---------------------------------------------------------------------------------------------------------
def s3_expected(buckets: list[str], full: bool, key: str = "k", other: str = "other") -> list[Row]:
    write = "allow" if full else "deny"
    rows: list[Row] = []
    for b in buckets:
        rows += [
            ("ListObjectsV2", b, "allow"), ("GetObject", f"{b}/{key}", "allow"), ("GetBucketLocation", b, "allow"),
            ("PutObject", f"{b}/{key}.w", write), ("DeleteObject", f"{b}/{key}.d", write),
            ("CreateMultipartUpload", f"{b}/{key}.m", write), ("PutBucketPolicy", b, "deny"),
            # a Links connection and CVAT's server
            ("HeadBucket", b, "allow"), ("ListObjectsV2", f"{b} (Delimiter=/)", "allow"),
            ("HeadObject", f"{b}/{key}", "allow"), ("GetObject", f"{b}/{key} (Range bytes=0-1023)", "allow"),
            # Supervisely's instance storage
            ("CompleteMultipartUpload", f"{b}/{key}.c (Create + UploadPart + Complete)", write),
            ("ListMultipartUploads", b, write),
            # never
            ("CopyObject", f"{b}/{key}.copy (from {other}, another bucket)", "deny"),
            ("PutObject", f"{b}/{key}.acl (x-amz-acl: public-read)", "deny"),
        ]
    return rows + [("ListBuckets", "*", "deny"), ("ListObjectsV2", f"{other} (another bucket)", "deny"),
                   ("PutObject", f"{other} (another bucket)", "deny"),
                   ("GetObject", f"{other}/{key} (another bucket)", "deny")]


@pytest.mark.parametrize("full", [False, True])
def test_s3_probe_table(full: bool) -> None:
    from provision.providers.aws.verify import probe_table

    user, admin = MagicMock(), MagicMock()
    table = probe_table(user, admin, ["b1", "b2"], full, "k", "other")
    assert rows_of(table) == s3_expected(["b1", "b2"], full)
    assert len(table) == 34 and user.method_calls == [] and admin.method_calls == []  # building makes no request

    def call(operation: str, target: str) -> Any:
        probe = next(p for p in table if (p.operation, p.target) == (operation, target))
        user.reset_mock()
        probe.call()
        return user.method_calls

    assert [(c[0], c.kwargs) for c in call("DeleteObject", "b1/k.d")] == [
        ("delete_object", {"Bucket": "b1", "Key": "k.d"})]
    assert [(c[0], c.kwargs) for c in call("ListObjectsV2", "b2 (Delimiter=/)")] == [
        ("list_objects_v2", {"Bucket": "b2", "Delimiter": "/", "MaxKeys": 1})]
    assert [(c[0], c.kwargs) for c in call("GetObject", "b1/k (Range bytes=0-1023)")][0] == (
        "get_object", {"Bucket": "b1", "Key": "k", "Range": "bytes=0-1023"})
    assert [(c[0], c.kwargs) for c in call("CopyObject", "b1/k.copy (from other, another bucket)")] == [
        ("copy_object", {"Bucket": "b1", "Key": "k.copy", "CopySource": {"Bucket": "other", "Key": "k"}})]
    assert [(c[0], c.kwargs) for c in call("PutObject", "b2/k.acl (x-amz-acl: public-read)")] == [
        ("put_object", {"Bucket": "b2", "Key": "k.acl", "Body": b"x", "ACL": "public-read"})]
    assert [c[0] for c in call("CompleteMultipartUpload", "b1/k.c (Create + UploadPart + Complete)")] == [
        "create_multipart_upload", "upload_part", "complete_multipart_upload"]
    assert admin.method_calls == []
    # every probe touches its own key: no two probes of a bucket write or delete what another one reads
    written = [t for op, t, _ in s3_expected(["b1"], True) if op in ("PutObject", "DeleteObject", "CopyObject",
                                                                     "CompleteMultipartUpload",
                                                                     "CreateMultipartUpload")]
    keys = [t.split(" ")[0] for t in written]
    assert len(set(keys)) == len(keys) and "b1/k" not in keys


def test_s3_multipart_probe_aborts_a_refused_upload() -> None:
    from provision.providers.aws.verify import multipart_probe, outcome

    user, admin = MagicMock(), MagicMock()
    user.create_multipart_upload.return_value = {"UploadId": "u1"}
    user.upload_part.side_effect = ClientError({"Error": {"Code": "AccessDenied"}}, "UploadPart")
    rows = run_probes([multipart_probe(user, admin, "b", "k.c", True)], outcome)
    assert [(r.operation, r.actual) for r in rows] == [("CompleteMultipartUpload", "deny")]
    assert [(c[0], c.kwargs) for c in admin.method_calls] == [
        ("abort_multipart_upload", {"Bucket": "b", "Key": "k.c", "UploadId": "u1"})]
    user.complete_multipart_upload.assert_not_called()
    acl = ClientError({"Error": {"Code": "AccessControlListNotSupported"}}, "PutObject")
    assert outcome(acl) == "deny"  # a bucket with ACLs disabled refused the public-read ACL


@pytest.mark.parametrize("access", ["--readonly", "--full"])
def test_s3_verify_on_the_sandbox(cli: Cli, admin: Admin, prefix: str, access: str) -> None:
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, access, "--no-verify")
    assert result.exit_code == 0, result.output
    buckets = granted()["buckets"]
    temporary = {b["Name"] for b in admin.s3.list_buckets()["Buckets"] if b["Name"].startswith("provision-verify-")}
    started = time.monotonic()
    doc = verify_json(cli, "sandbox")
    print(f"\nprovision verify, S3 {access}, {len(buckets)} buckets: {time.monotonic() - started:.2f} s")
    assert ran(doc) == s3_expected(buckets, access == "--full", f".provision-verify/{TOKEN}",
                                   f"provision-verify-{TOKEN}")
    # verify left nothing behind: no temporary bucket, no probe object, no unfinished upload (an earlier test's
    # killed verify may have left a bucket not yet stale: it is not this verify's)
    assert not [b["Name"] for b in admin.s3.list_buckets()["Buckets"] if b["Name"].startswith("provision-verify-")
                and b["Name"] not in temporary]
    for bucket in buckets:
        assert admin.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
        assert admin.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_verify_removes_an_interrupted_verifys_stale_bucket(cli: Cli, admin: Admin, prefix: str) -> None:
    """A temporary bucket an interrupted verify left (tagged with verify's mark, holding its probe object) is
    removed by the next verify once stale; a fresh one (a verify running concurrently) and a bucket that merely
    has the name are left alone."""
    from datetime import datetime, timezone

    from provision.providers.aws.verify import MARK, STALE_AFTER

    def make(name: str, tags: list[dict[str, str]] | None) -> str:
        admin.s3.create_bucket(Bucket=name)
        if tags is not None:
            admin.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
        admin.s3.put_object(Bucket=name, Key=".provision-verify/x", Body=b"provision verify")
        return name

    now = datetime.now(timezone.utc)
    hexes = [f"{prefix[-5:]}{n:05x}" for n in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{10}", h) for h in hexes), hexes
    stale = make(f"provision-verify-{hexes[0]}", [{"Key": MARK, "Value": (now - STALE_AFTER * 2).isoformat()}])
    fresh = make(f"provision-verify-{hexes[1]}", [{"Key": MARK, "Value": now.isoformat()}])
    foreign = make(f"provision-verify-{hexes[2]}", [{"Key": "team", "Value": "x"}])
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--no-verify").exit_code == 0
    verify_json(cli, "sandbox")
    names = {b["Name"] for b in admin.s3.list_buckets()["Buckets"]}
    assert stale not in names and {fresh, foreign} <= names
    for name in (fresh, foreign):
        admin.s3.delete_object(Bucket=name, Key=".provision-verify/x")
        admin.s3.delete_bucket(Bucket=name)


# ---- Azure ------------------------------------------------------------------------------------------------------
def azure_expected(containers: list[str], key_mode: bool, full: bool, other_account: str | None,
                   token: str = TOKEN) -> list[Row]:
    write, key = ("allow" if full else "deny"), ("allow" if key_mode else "deny")
    blob, other = f".provision-verify/{token}", f"provision-verify-{token}"
    scope = "account key" if key_mode else "an account SAS covers every container of the account"
    rows: list[Row] = []
    for c in containers:
        rows += [
            ("ListBlobs", c, "allow"), ("GetBlob", f"{c}/{blob}", "allow"), ("GetContainerProperties", c, "allow"),
            ("PutBlob", f"{c}/{blob}.w", write), ("SetContainerMetadata", f"{c} (unchanged values)", write),
            ("SetContainerAcl", f"{c} (unchanged values)", key), ("DeleteBlob", f"{c}/{blob}.d", write),
            ("ListBlobs", f"{c} (delimiter=/)", "allow"), ("GetBlobProperties", f"{c}/{blob}", "allow"),
            ("GetBlob", f"{c}/{blob} (Range bytes=0-1023)", "allow"),
            ("PutBlockList", f"{c}/{blob}.b (Put Block + Put Block List)", write),
        ]
    rows += [("ListContainers", "(account)", key), ("CreateContainer", f"{other}-new", write),
             ("DeleteContainer", f"{other}-del", write),
             ("ListBlobs", f"{other} (another container: {scope})", "allow"),
             ("GetBlob", f"{other}/{blob} (another container)", "allow"),
             ("PutBlob", f"{other}/{blob}.w (another container)", write)]
    if other_account is not None:
        rows += [("GetBlob", f"{other_account}/{other}/{blob} (another account)", "deny"),
                 ("ListBlobs", f"{other_account}/{other} (another account)", "deny"),
                 ("PutBlob", f"{other_account}/{other}/{blob}.w (another account)", "deny")]
    return rows


@pytest.mark.parametrize("key_mode, full", [(False, False), (False, True), (True, True)])
@pytest.mark.parametrize("other_account", [None, "otheracct"])
def test_azure_probe_table(key_mode: bool, full: bool, other_account: str | None) -> None:
    from provision.providers.azure.verify import ProbeNames, probe_table

    user, admin = MagicMock(), MagicMock()
    other = (other_account, MagicMock()) if other_account else None
    table = probe_table(["c1", "c2"], user, admin, ProbeNames.new("t0"), key_mode, full, other)
    assert rows_of(table) == azure_expected(["c1", "c2"], key_mode, full, other_account, "t0")
    assert len(table) == (31 if other_account else 28)
    for client in (admin, user):  # building the table makes no request (client objects are local)
        assert {c[0] for c in client.method_calls} <= {"get_container_client"}
        assert client.get_container_client.return_value.method_calls == []


def test_azure_admin_reads_inside_probes_are_the_set_ups_failure() -> None:
    """SetContainerMetadata reads the current metadata with the admin credential: a refusal of that read is not
    the grant's "deny" but a failed set-up, which stops verify."""
    from azure.core.exceptions import HttpResponseError

    from provision.providers.azure.verify import ProbeNames, outcome, probe_table

    admin = MagicMock()
    refused = HttpResponseError("refused")
    refused.status_code = 403
    admin.get_container_client.return_value.get_container_properties.side_effect = refused
    table = probe_table(["c1"], MagicMock(), admin, ProbeNames.new("t0"), False, True)
    with pytest.raises(CloudRefused, match="could not set up its probes"):
        run_probes(table, outcome)


@pytest.mark.parametrize("access", ["--readonly", "--full"])
def test_azure_sas_verify_on_azurite(cli: Cli, azure_admin: AzureAdmin, prefix: str, access: str) -> None:
    result = cli("azure", "--env", "sandbox", "--prefix", prefix, access, "--no-verify")
    assert result.exit_code == 0, result.output
    containers = granted()["buckets"]
    before = {c.name for c in azure_admin.blob.list_containers(name_starts_with="provision-verify-")}
    started = time.monotonic()
    doc = verify_json(cli, "sandbox")
    print(f"\nprovision verify, Azure SAS {access}, {len(containers)} containers: {time.monotonic() - started:.2f} s")
    assert ran(doc) == azure_expected(containers, False, access == "--full", azure_admin.endpoint.other.name)
    left = {c.name for c in azure_admin.blob.list_containers(name_starts_with="provision-verify-")} - before
    assert left == set()  # (a killed run's, left by the kill tests, are removed only once stale)
    for container in containers:
        assert list(azure_admin.blob.get_container_client(container).list_blobs()) == []


def test_azure_account_key_verify_on_azurite(cli: Cli, azure_admin: AzureAdmin, prefix: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = azure_admin.endpoint
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", endpoint.ca_file)
    cs = endpoint.connection_string()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", cs)
    result = cli("azure", f"{prefix}-cs", "--connection-string", cs, "--env", "cs", "--account-key", "--no-verify")
    assert result.exit_code == 0, result.output
    assert granted("cs")["auth"]["kind"] == "key_pair"
    assert ran(verify_json(cli, "cs")) == azure_expected([f"{prefix}-cs"], True, True, None)
    assert cli("destroy", "--env", "cs", "--yes").exit_code == 0


# ---- GCS --------------------------------------------------------------------------------------------------------
def gcs_setup(access: Access) -> Any:
    from provision.providers.gcp.verify import Setup

    grant = Grant(provider="gcs", storage_provider="google", access=access, buckets=["b-one", "b-two"],
                  endpoint="storage.googleapis.com", auth=KeyFile(path="/k.json"))
    return Setup.new(grant, PROJECT)


def key_file_expected(buckets: list[str], full: bool, probe: str, other: str) -> list[Row]:
    write = "allow" if full else "deny"
    rows: list[Row] = []
    for b in buckets:
        rows += [
            ("objects.list", b, "allow"), ("objects.get", f"{b}/{probe}", "allow"), ("buckets.get", b, "allow"),
            ("objects.create", f"{b}/{probe}.w", write), ("objects.delete", f"{b}/{probe}.d", write),
            ("buckets.setIamPolicy", b, "deny"),
            ("objects.list", f"{b} (delimiter=/)", "allow"), ("objects.get", f"{b}/{probe} (metadata)", "allow"),
            ("objects.get", f"{b}/{probe} (Range bytes=0-1023)", "allow"),
            ("objects.create", f"{b}/{probe}.r (resumable upload, 2 chunks)", write),
        ]
    target = f"{other} (another bucket)"
    return rows + [("buckets.list", f"project {PROJECT}", "deny"), ("objects.list", target, "deny"),
                   ("objects.get", target, "deny"), ("objects.create", target, "deny")]


@pytest.mark.parametrize("access", [Access.readonly, Access.full])
def test_gcs_key_file_probe_table(access: Access) -> None:
    from provision.providers.gcp.verify import key_file_probes

    s = gcs_setup(access)
    policies: list[str] = []
    table = key_file_probes(None, policies.append, s)  # building the table calls no client
    assert rows_of(table) == key_file_expected(["b-one", "b-two"], access == Access.full, s.probe, s.other)
    assert policies == []  # the current policy is read (by the admin) when the setIamPolicy probe runs


@pytest.mark.parametrize("access", [Access.readonly, Access.full])
def test_gcs_hmac_probe_table(access: Access) -> None:
    from provision.providers.gcp.verify import hmac_probes

    s = gcs_setup(access)
    write = "allow" if access == Access.full else "deny"
    other = f"{s.other} (another bucket)"
    assert rows_of(hmac_probes(None, s)) == [
        row for b in ("b-one", "b-two") for row in (
            ("ListObjectsV2", b, "allow"), ("GetObject", f"{b}/{s.probe}", "allow"),
            ("PutObject", f"{b}/{s.probe}.w", write), ("DeleteObject", f"{b}/{s.probe}.d", write),
            ("HeadBucket", b, "allow"), ("ListObjectsV2", f"{b} (Delimiter=/)", "allow"),
            ("HeadObject", f"{b}/{s.probe}", "allow"), ("GetObject", f"{b}/{s.probe} (Range bytes=0-1023)", "allow"),
            ("CompleteMultipartUpload", f"{b}/{s.probe}.c (Create + UploadPart + Complete)", write))] + [
        ("ListBuckets", "*", "deny"), ("ListObjectsV2", other, "deny"), ("PutObject", other, "deny")]


@pytest.mark.parametrize("access", ["--readonly", "--full"])
def test_gcs_key_file_verify_through_the_fake(cli: Cli, google: FakeGoogle, gcs_admin: GcsAdmin,
                                              prefix: str, access: str) -> None:
    result = gcs(cli, "--prefix", prefix, access, "--no-verify")
    assert result.exit_code == 0, result.output
    buckets = granted("gcp")["buckets"]
    started = time.monotonic()
    doc = verify_json(cli, "gcp")
    print(f"\nprovision verify, GCS key file {access}, {len(buckets)} buckets: {time.monotonic() - started:.2f} s")
    assert ran(doc) == key_file_expected(buckets, access == "--full", f".provision-verify/{TOKEN}",
                                         f"provision-verify-{TOKEN}")
    assert not [b.name for b in gcs_admin.storage.list_buckets() if b.name.startswith("provision-verify-")]
    for bucket in buckets:
        assert [b.name for b in gcs_admin.storage.list_blobs(bucket)] == []


# ---- the runner ---------------------------------------------------------------------------------------------------
def test_run_probes_is_concurrent_and_keeps_table_order() -> None:
    """Eight probes that each wait for all eight to have started can only finish when they run at once; the
    later ones finish first, and the rows still come in table order."""
    started = threading.Barrier(8, timeout=10)

    def probe(i: int) -> Any:
        started.wait()
        time.sleep(0.01 * (8 - i))
        if i % 3 == 0:
            raise PermissionError(f"denied {i}")
        return i

    def outcome(exc: BaseException) -> str | None:
        return "deny" if isinstance(exc, PermissionError) else None

    table = [Probe("Op", f"t{i}", i % 3 != 0, lambda i=i: probe(i)) for i in range(8)]
    rows = run_probes(table, outcome)
    assert [(r.target, r.expected, r.actual) for r in rows] == [
        (f"t{i}", "deny" if i % 3 == 0 else "allow", "deny" if i % 3 == 0 else "allow") for i in range(8)]
    assert all(r.ok for r in rows)


def test_run_probes_propagates_what_is_not_the_services_answer_after_all_ran() -> None:
    finished: list[int] = []
    lock = threading.Lock()

    def probe(i: int) -> int:
        time.sleep(0.02 if i == 1 else 0.0)
        with lock:
            finished.append(i)
        if i in (1, 4):
            raise RuntimeError(f"no answer {i}")
        return i

    table = [Probe("Op", f"t{i}", True, lambda i=i: probe(i)) for i in range(6)]
    with pytest.raises(RuntimeError, match="no answer 1"):  # the first in table order, not the first to fail
        run_probes(table, lambda exc: None)
    assert sorted(finished) == list(range(6))  # nothing left running when it propagates

    thens: list[int] = []
    rows = run_probes([Probe("Op", "t", True, lambda: 7, thens.append)], lambda exc: None)
    assert thens == [7] and rows[0].actual == "allow"  # a probe's clean-up gets the call's result


def test_run_concurrently_returns_results_in_order() -> None:
    assert run_concurrently([]) == []
    assert run_concurrently([lambda i=i: (time.sleep(0.01 * (5 - i)), i)[1] for i in range(5)]) == list(range(5))

