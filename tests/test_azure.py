"""`provision azure`: SAS, account key and keyless grants against Azurite over HTTPS (the sandbox) and a fake Azure
Resource Manager (tests/azure_fake.py, real azure-mgmt-* and azure-identity clients over HTTP): what each issued
credential can and cannot do, the secure account settings in the PUT body, idempotent re-runs, renewal and
rotation, faults at every mutating step, destroy, bad input, and migrate / links / manifest on an Azure env."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.exceptions import HttpResponseError
from PIL import Image

from provision.errors import CloudRefused
from provision.models import Access, SasToken
from provision.profiles import Profile
from provision.providers.azure import (
    SAS_CLOCK_SKEW,
    AzureProvider,
    SasExpiry,
    issue_sas,
    sas_fields,
    sas_renewal,
)
from provision.state import StateStore
from tests.azure_fake import SUBSCRIPTION, FakeArm
from tests.conftest import AzureAdmin, Cli, error_lines, read_grant

READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
PRINCIPAL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
MiB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("no_azure_env")  # tests/fake_fixtures.py


def denied(call: Any, *args: Any, **kwargs: Any) -> bool:
    """True when the call is refused with 403, False when it succeeds; anything else fails the test."""
    try:
        result = call(*args, **kwargs)
        if hasattr(result, "by_page"):
            list(next(result.by_page(), []))
        return False
    except HttpResponseError as exc:
        assert exc.status_code == 403, f"unexpected {exc.status_code} {exc.error_code}"
        return True


def token(env: str = "sandbox") -> str:
    return read_grant(env)["grant"]["auth"]["token"]


def one_line_error(result: Any) -> None:
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def azure(cli: Cli, *args: str) -> Any:
    return cli("azure", *args)


# ---- the SAS against Azurite ----------------------------------------------------------------------------------
def test_readonly_sas_reads_and_nothing_else(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    result = azure(cli, "--env", "sandbox", "--prefix", prefix, "--sas-expiry", "7d")
    assert result.exit_code == 0, result.output
    assert "verify: all 31 probes match the grant" in result.stderr
    grant = read_grant()["grant"]
    endpoint = azure_admin.endpoint
    assert {k: v for k, v in grant.items() if k != "auth"} == {
        "provider": "azure", "storage_provider": "azure", "access": "readonly",
        "buckets": [f"{prefix}-public", f"{prefix}-private"], "endpoint": endpoint.account_url(),
        "endpoint_url": endpoint.account_url(), "port": None, "secure": True, "region": None}
    auth = grant["auth"]
    assert auth["kind"] == "sas" and auth["account_name"] == azure_admin.account.name
    fields = sas_fields(auth["token"])
    assert (fields["sp"], fields["ss"], fields["srt"], fields["spr"]) == ("rl", "b", "co", "https")
    start, expiry = (datetime.fromisoformat(fields[k].replace("Z", "+00:00")) for k in ("st", "se"))
    assert expiry - start == timedelta(days=7) + SAS_CLOCK_SKEW
    assert datetime.fromisoformat(auth["expires_at"]) == expiry
    assert auth["token"] not in result.output

    user = azure_admin.client(auth["token"])
    for name in grant["buckets"]:
        azure_admin.blob.get_container_client(name).upload_blob("img/a.jpg", b"jpeg")
        mine = user.get_container_client(name)
        assert [b.name for b in mine.list_blobs()] == ["img/a.jpg"]
        assert mine.download_blob("img/a.jpg").readall() == b"jpeg"
        assert not denied(mine.get_container_properties)
        assert denied(mine.upload_blob, "new.jpg", b"x")
        assert denied(mine.delete_blob, "img/a.jpg")
        assert denied(mine.set_container_metadata, {"k": "v"})
        assert denied(mine.set_container_access_policy, signed_identifiers={}, public_access="container")
    assert denied(user.create_container, f"{prefix}-new")
    assert denied(user.list_containers)
    other = azure_admin.endpoint.other
    from azure.storage.blob import BlobServiceClient

    theirs = BlobServiceClient(endpoint.account_url(other.name), credential={"account_name": other.name,
                               "account_key": other.key1}, connection_verify=endpoint.ca_file)
    theirs.create_container(f"{prefix}-theirs").upload_blob("secret.txt", b"x")
    stranger = azure_admin.client(auth["token"], account=other.name)
    assert denied(stranger.get_container_client(f"{prefix}-theirs").download_blob, "secret.txt")
    assert denied(stranger.get_container_client(f"{prefix}-theirs").list_blobs)
    theirs.delete_container(f"{prefix}-theirs")


def test_full_sas_writes_and_reaches_no_other_account(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    result = azure(cli, f"{prefix}-data", "--env", "sandbox", "--full")
    assert result.exit_code == 0, result.output
    fields = sas_fields(token())
    assert set(fields["sp"]) == set("racwdl") and fields["spr"] == "https"
    mine = azure_admin.client(token()).get_container_client(f"{prefix}-data")
    mine.upload_blob("a.jpg", b"x")
    assert mine.download_blob("a.jpg").readall() == b"x"
    mine.delete_blob("a.jpg")
    assert list(mine.list_blobs()) == []
    stranger = azure_admin.client(token(), account=azure_admin.endpoint.other.name)
    assert denied(stranger.create_container, f"{prefix}-x")
    assert denied(stranger.get_container_client(f"{prefix}-data").upload_blob, "a.jpg", b"x")


def test_expired_and_tampered_sas_are_denied(azure_admin: AzureAdmin, prefix: str) -> None:
    account = azure_admin.account
    container = azure_admin.blob.create_container(f"{prefix}-c")
    container.upload_blob("a.txt", b"x")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    good = issue_sas(account.name, account.key2, Access.readonly, now - SAS_CLOCK_SKEW, now + timedelta(hours=1))
    assert azure_admin.client(good).get_container_client(f"{prefix}-c").download_blob("a.txt").readall() == b"x"
    expired = issue_sas(account.name, account.key2, Access.readonly, now - timedelta(hours=2), now - timedelta(hours=1))
    assert denied(azure_admin.client(expired).get_container_client(f"{prefix}-c").download_blob, "a.txt")
    not_yet = issue_sas(account.name, account.key2, Access.readonly, now + timedelta(hours=1), now + timedelta(hours=2))
    assert denied(azure_admin.client(not_yet).get_container_client(f"{prefix}-c").download_blob, "a.txt")
    fields = sas_fields(good)
    widened = good.replace("sp=rl", "sp=rwdl")  # same signature, more permissions
    assert widened != good
    assert denied(azure_admin.client(widened).get_container_client(f"{prefix}-c").upload_blob, "b.txt", b"x")
    sig = fields["sig"]
    flipped = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]
    tampered = good.rsplit("sig=", 1)[0] + "sig=" + quote(flipped, safe="")
    assert tampered != good
    assert denied(azure_admin.client(tampered).get_container_client(f"{prefix}-c").download_blob, "a.txt")
    by_key1 = issue_sas(account.name, account.key1, Access.readonly, now - SAS_CLOCK_SKEW, now + timedelta(hours=1))
    assert sas_fields(by_key1)["sig"] != sig  # signed with key2, so rotating key2 revokes it and leaves key1 be
    azure_admin.blob.delete_container(f"{prefix}-c")


SAS_TABLE = {
    # operation: (readonly SAS sp=rl, full SAS sp=racwdl) — as Azurite enforced them for an account SAS ss=b srt=co
    "ListBlobs": ("allow", "allow"),
    "GetBlob": ("allow", "allow"),
    "GetContainerProperties": ("allow", "allow"),
    "GetBlobProperties": ("allow", "allow"),
    "PutBlob": ("deny", "allow"),
    "PutBlockList": ("deny", "allow"),
    "SetContainerMetadata": ("deny", "allow"),
    "SetContainerAcl": ("deny", "deny"),
    "DeleteBlob": ("deny", "allow"),
    "ListContainers": ("deny", "deny"),
    "CreateContainer": ("deny", "allow"),
    "DeleteContainer": ("deny", "allow"),
    "ListBlobs (another container)": ("allow", "allow"),
    "GetBlob (another container)": ("allow", "allow"),
    "PutBlob (another container)": ("deny", "allow"),
    "GetBlob (another account)": ("deny", "deny"),
    "ListBlobs (another account)": ("deny", "deny"),
    "PutBlob (another account)": ("deny", "deny"),
}


def probe_name(operation: str, target: str) -> str:
    """A probe row's SAS_TABLE name: the operation, qualified when the target is another container or account."""
    where = next((w for w in ("another container", "another account") if w in target), None)
    return f"{operation} ({where})" if where else operation


def verify_table(cli: Cli) -> dict[str, str]:
    result = cli("verify", "--env", "sandbox", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    table: dict[str, str] = {}
    for row in doc["rows"]:
        name = probe_name(row["operation"], row["target"])
        assert table.setdefault(name, row["actual"]) == row["actual"], name  # the same on every container
        assert row["expected"] == row["actual"], row
    return table


def test_sas_permission_table_as_verify_sees_it(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    before = {c.name for c in azure_admin.blob.list_containers(name_starts_with="provision-verify-")}
    assert azure(cli, "--env", "sandbox", "--prefix", prefix, "--readonly", "--no-verify").exit_code == 0
    readonly = verify_table(cli)
    assert azure(cli, "--env", "sandbox", "--prefix", prefix, "--full", "--no-verify", "--yes").exit_code == 0
    full = verify_table(cli)
    seen = {op: (readonly[op], full[op]) for op in SAS_TABLE}
    assert seen == SAS_TABLE and set(readonly) == set(full) == set(SAS_TABLE)
    print("\nSAS permission table (Azurite, account SAS ss=b srt=co spr=https):")
    print(f"{'operation':34} {'sp=rl':8} sp=racwdl")
    for op, (ro, rw) in seen.items():
        print(f"{op:34} {ro:8} {rw}")
    names = {c.name for c in azure_admin.blob.list_containers(name_starts_with="provision-verify-")} - before
    assert names == set()  # verify cleaned up after itself (a killed run's are removed only once stale)


def test_rerun_makes_no_mutating_request_and_keeps_the_sas(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    first = token()
    for _ in range(2):
        azure_admin.reset_log()
        result = azure(cli, "--env", "sandbox", "--prefix", prefix)
        assert result.exit_code == 0, result.output
        assert azure_admin.log(), "the re-run read nothing: it cannot have checked anything"
        assert azure_admin.mutating() == []
        assert "no changes" in result.stderr and "expires" in result.stderr
    assert token() == first


def test_dry_run_makes_no_mutating_request(cli: Cli, azure_admin: AzureAdmin, prefix: str, workdir: Path) -> None:
    azure_admin.reset_log()
    result = azure(cli, "--env", "sandbox", "--prefix", prefix, "--full", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert azure_admin.log() and azure_admin.mutating() == []
    changes = {(c["action"], c["kind"], c["name"]) for c in json.loads(result.stdout)["changes"]}
    assert {("create", "container", f"{prefix}-public"), ("create", "container", f"{prefix}-private"),
            ("issue", "sas", azure_admin.account.name)} <= changes
    assert not (workdir / ".provision" / "sandbox.json").exists()
    assert not any(c.name.startswith(prefix) for c in azure_admin.blob.list_containers())
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    azure_admin.reset_log()
    for args in (["azure", "--env", "sandbox", "--prefix", prefix, "--rotate"],
                 ["destroy", "--env", "sandbox", "--delete-data"]):
        assert cli(*args, "--dry-run").exit_code == 0
    assert azure_admin.mutating() == []


def test_other_expiry_is_reported_and_kept_until_rotate(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix, "--sas-expiry", "30d").exit_code == 0
    first = read_grant()["grant"]["auth"]
    result = azure(cli, "--env", "sandbox", "--prefix", prefix, "--sas-expiry", "12h")
    assert result.exit_code == 0, result.output
    assert "--sas-expiry 12h differs from the stored SAS" in result.stderr and "kept" in result.stderr
    assert "no changes" in result.stderr
    assert read_grant()["grant"]["auth"] == first
    azure_admin.reset_log()
    result = azure(cli, "--env", "sandbox", "--prefix", prefix, "--sas-expiry", "12h", "--rotate", "--json",
                   "--no-verify")
    assert result.exit_code == 0, result.output
    new = read_grant()["grant"]["auth"]
    assert new["token"] != first["token"]
    fields = sas_fields(new["token"])
    assert _instant(fields["se"]) - _instant(fields["st"]) == timedelta(hours=12) + SAS_CLOCK_SKEW
    issued = [c for c in json.loads(result.stdout)["changes"] if c["action"] == "issue"]
    assert len(issued) == 1 and "rotation" in issued[0]["detail"] and "stays valid until" in issued[0]["detail"]
    assert azure_admin.mutating() == []  # a SAS is signed locally: no request writes anything
    old = azure_admin.client(first["token"]).get_container_client(f"{prefix}-public")
    assert not denied(old.get_container_properties)  # data-plane mode cannot revoke: it says so (above)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_sas_due_for_renewal_is_reissued(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    path = Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.json"
    state = json.loads(path.read_text())
    now = datetime.now(timezone.utc).replace(microsecond=0)
    account = azure_admin.account
    # 1 d 30 min left: still "1 d 0 h" when the run's clock (to the second) has moved on since `now`
    expires = now + timedelta(days=1, minutes=30)
    old = issue_sas(account.name, account.key2, Access.readonly, now - timedelta(days=29), expires)
    [record] = state["grants"].values()
    record["grant"]["auth"].update(token=old, expires_at=expires.isoformat())
    path.write_text(json.dumps(state))
    result = azure(cli, "--env", "sandbox", "--prefix", prefix, "--json")
    assert result.exit_code == 0, result.output
    issued = [c["detail"] for c in json.loads(result.stdout)["changes"] if c["action"] == "issue"]
    assert len(issued) == 1 and issued[0].startswith("renewal: 1 d 0 h left of the stored SAS, under 7 d 0 h")
    new = read_grant()["grant"]["auth"]
    assert new["token"] != old and _instant(new["expires_at"]) >= now + timedelta(days=30)


def test_sas_renewal_rule() -> None:
    now = datetime(2027, 1, 1, tzinfo=timezone.utc)
    key = "a2V5" * 22

    def stored(issued: datetime, lifetime: timedelta, access: Access = Access.readonly) -> SasToken:
        return SasToken(account_name="acme", token=issue_sas("acme", key, access, issued - SAS_CLOCK_SKEW,
                                                             issued + lifetime), expires_at=issued + lifetime)

    week = timedelta(days=7)
    assert sas_renewal(stored(now - timedelta(days=20), timedelta(days=30)), Access.readonly, now, week) is None
    assert sas_renewal(stored(now - timedelta(days=24), timedelta(days=30)), Access.readonly, now, week).startswith(
        "renewal: 6 d 0 h left")  # under 7 d
    # a 12 h SAS: half its lifetime (6 h) is the smaller threshold
    assert sas_renewal(stored(now - timedelta(hours=5), timedelta(hours=12)), Access.readonly, now, week) is None
    assert sas_renewal(stored(now - timedelta(hours=7), timedelta(hours=12)), Access.readonly, now, week)
    assert "expired" in sas_renewal(stored(now - timedelta(days=31), timedelta(days=30)), Access.readonly, now, week)
    assert "access changed" in sas_renewal(stored(now, timedelta(days=30)), Access.full, now, week)
    assert sas_renewal(stored(now, timedelta(days=30), Access.full), Access.full, now, week) is None


def test_expiry_parsing() -> None:
    now = datetime(2027, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert SasExpiry.parse("30d", now).expiry(now) == datetime(2027, 1, 31, 12, tzinfo=timezone.utc)
    assert SasExpiry.parse("12h", now).lifetime == timedelta(hours=12)
    fixed = SasExpiry.parse("2027-03-01T00:00:00Z", now)
    assert fixed.lifetime is None and fixed.expiry(now) == datetime(2027, 3, 1, tzinfo=timezone.utc)
    assert SasExpiry.parse("2027-03-01T02:00:00+02:00", now).instant == datetime(2027, 3, 1, tzinfo=timezone.utc)
    token = issue_sas("acme", "a2V5" * 22, Access.full, now - SAS_CLOCK_SKEW, fixed.expiry(now))
    fields = sas_fields(token)
    assert (fields["st"], fields["se"], fields["spr"], fields["ss"]) == (
        "2027-01-01T11:55:00Z", "2027-03-01T00:00:00Z", "https", "b")


def test_account_key_grant(cli: Cli, azure_admin: AzureAdmin, prefix: str, workdir: Path) -> None:
    result = azure(cli, "--env", "sandbox", "--prefix", prefix, "--account-key")
    assert result.exit_code == 0, result.output
    grant = read_grant()["grant"]
    assert grant["access"] == "full"
    assert grant["auth"] == {"kind": "key_pair", "access_key": azure_admin.account.name,
                             "secret_key": azure_admin.account.key1}
    assert azure_admin.account.key1 not in result.output
    azure_admin.reset_log()
    assert azure(cli, "--env", "sandbox", "--prefix", prefix, "--account-key").exit_code == 0
    assert azure_admin.mutating() == []
    done = cli("destroy", "--env", "sandbox", "--yes")
    assert done.exit_code == 0 and "account key key1 of provisionsandbox (rotate it to revoke)" in done.stderr
    assert not (workdir / ".provision" / "sandbox.json").exists()


def test_adopted_public_container_is_made_private_and_kept(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    legacy = azure_admin.blob.create_container(f"{prefix}-legacy", public_access="container")
    legacy.upload_blob("keep/me.jpg", b"precious")
    result = azure(cli, f"{prefix}-legacy", f"{prefix}-new", "--env", "sandbox", "--full", "--json")
    assert result.exit_code == 0, result.output
    mine = {(c["action"], c["detail"]) for c in json.loads(result.stdout)["changes"] if c["name"] == f"{prefix}-legacy"}
    assert ("adopt", "public access container; adopted (destroy never deletes it)") in mine
    assert ("update", "public access container → off (private)") in mine
    assert legacy.get_container_properties().public_access is None
    assert [r["created"] for r in read_grant()["resources"] if r["name"] == f"{prefix}-legacy"] == [False]
    done = cli("destroy", "--env", "sandbox", "--yes")
    assert done.exit_code == 0, done.output
    assert "left in place" in done.stderr and f"{prefix}-legacy" in done.stderr
    assert legacy.download_blob("keep/me.jpg").readall() == b"precious"
    names = {c.name for c in azure_admin.blob.list_containers() if c.name.startswith(prefix)}
    assert names == {f"{prefix}-legacy"}


def test_destroy_refuses_a_container_holding_blobs(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    azure_admin.blob.get_container_client(f"{prefix}-private").upload_blob("data.bin", b"x")
    azure_admin.reset_log()
    refused = cli("destroy", "--env", "sandbox", "--yes")
    assert refused.exit_code == 2 and "--delete-data" in refused.stderr and f"{prefix}-private" in refused.stderr
    assert azure_admin.mutating() == []
    assert cli("destroy", "--env", "sandbox", "--yes", "--delete-data").exit_code == 0
    assert not any(c.name.startswith(prefix) for c in azure_admin.blob.list_containers())


def test_connection_string_mode_keeps_the_key_out_of_state(cli: Cli, azure_admin: AzureAdmin, prefix: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = azure_admin.endpoint
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", endpoint.ca_file)
    cs = endpoint.connection_string()
    result = azure(cli, f"{prefix}-cs", "--connection-string", cs, "--env", "cs", "--json", "--shared-account")
    assert result.exit_code == 0, result.output
    text = (Path(os.environ["PROVISION_STATE_DIR"]) / "cs.json").read_text()
    assert azure_admin.account.key1 not in text  # the connection string is stored without its key
    state = read_grant("cs")
    assert state["inputs"]["connection_string"] == (
        f"DefaultEndpointsProtocol=https;AccountName={endpoint.account.name};BlobEndpoint={endpoint.account_url()};")
    assert state["grant"]["endpoint"] == endpoint.account_url()
    issued = [c["detail"] for c in json.loads(result.stdout)["changes"] if c["action"] == "issue"]
    assert "signed with the connection string's key" in issued[0]
    # signed with the connection string's key (key1 here), so Azurite accepts it
    assert azure_admin.client(token("cs")).get_container_client(f"{prefix}-cs").get_container_properties()
    refused = cli("destroy", "--env", "cs", "--yes")  # the key is not stored: destroy asks for it
    assert refused.exit_code == 2 and "AZURE_STORAGE_CONNECTION_STRING" in refused.stderr
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", cs)
    assert cli("verify", "--env", "cs").exit_code == 0
    assert cli("destroy", "--env", "cs", "--yes").exit_code == 0
    assert not any(c.name.startswith(prefix) for c in azure_admin.blob.list_containers())


# ---- bad input: exit 2, one line, nothing created -----------------------------------------------------------------
BAD = [
    (["Bad_Name"], "invalid container name 'Bad_Name'"),
    (["ab"], "container names are 3–63 characters"),
    (["a--b"], "two consecutive dashes"),
    (["abc-"], "must begin and end with a lowercase letter or a digit"),
    (["x" * 64], "is 64 characters long"),
    (["--prefix", "p", "p-extra"], "give CONTAINER names or --prefix, not both"),
    (["--prefix", "a" * 60], "is 67 characters long"),
    (["--prefix", "p", "--sas-expiry", "2020-01-01T00:00:00Z"], "it is in the past"),
    (["--prefix", "p", "--sas-expiry", "soon"], "expected Nd, Nh or an ISO-8601 UTC instant"),
    (["--prefix", "p", "--sas-expiry", "2030-01-01T00:00:00"], "the instant has no time zone"),
    (["--prefix", "p", "--sas-expiry", "0d"], "a lifetime of zero"),
    (["--prefix", "p", "--renew-before", "1w"], "invalid --renew-before '1w'"),
    (["--prefix", "p", "--account-key", "--readonly"], "--account-key cannot be read-only"),
    (["--prefix", "p", "--account-key", "--sas-expiry", "7d"], "--sas-expiry applies to a SAS"),
    (["--prefix", "p", "--readonly", "--full"], "--readonly and --full are mutually exclusive"),
    (["--prefix", "p", "--resource-group", "rg"], "--resource-group needs the management plane"),
    (["--prefix", "p", "--keyless", PRINCIPAL], "--keyless needs the management plane"),
    (["--prefix", "p", "--account", "someoneelse"], "is not the sandbox's account"),
    (["--prefix", "p", "--connection-string", "AccountName=x;AccountKey=eA=="], "does not apply to --env sandbox"),
]
BAD_MGMT = [
    (["--prefix", "p"], "no storage account given"),
    (["--prefix", "p", "--account", "Acme"], "may contain only lowercase letters and digits"),
    (["--prefix", "p", "--account", "ab"], "storage account names are 3–24 characters"),
    (["--prefix", "p", "--account", "a" * 25], "is 25 characters long"),
    (["--prefix", "p", "--account", "acmeprov", "--subscription", "nope"], "a subscription id is a GUID"),
    (["--prefix", "p", "--account", "acmeprov", "--resource-group", "bad/rg"], "invalid --resource-group"),
    (["--prefix", "p", "--account", "acmeprov", "--keyless", "not-a-guid"], "it must be the managed identity's"),
    (["--prefix", "p", "--account", "acmeprov", "--keyless", PRINCIPAL, "--account-key"],
     "--account-key and --keyless are mutually exclusive"),
    (["--prefix", "p", "--connection-string", "garbage"], "the connection string"),
    (["--prefix", "p", "--connection-string", "UseDevelopmentStorage=true"], "is not https"),
    (["--prefix", "p", "--connection-string",
      "BlobEndpoint=https://acme.blob.core.windows.net;SharedAccessSignature=sv=2020&sig=x"], "holds a SAS"),
    (["--prefix", "p", "--connection-string", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=eA==",
      "--account", "other"], "differs from the connection string's account"),
    (["--prefix", "p", "--connection-string", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=eA==",
      "--location", "westus"], "--location needs the management plane"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_sandbox(cli: Cli, azure_admin: AzureAdmin, workdir: Path, args: list[str], message: str) -> None:
    azure_admin.reset_log()
    result = azure(cli, "--env", "sandbox", *args)
    assert result.exit_code == 2, result.output
    one_line_error(result)
    assert message in result.stderr
    assert azure_admin.log() == []
    assert not (workdir / ".provision" / "sandbox.json").exists()


@pytest.mark.parametrize("args, message", BAD_MGMT)
def test_bad_input_management(cli: Cli, arm: FakeArm, workdir: Path, args: list[str], message: str) -> None:
    result = azure(cli, *args)
    assert result.exit_code == 2, result.output
    one_line_error(result)
    assert message in result.stderr
    assert arm.requests == []
    assert not (workdir / ".provision" / "default.json").exists()


# ---- the management plane (fake ARM server) -----------------------------------------------------------------------
def arm_puts(fake: FakeArm, what: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["method"] == "PUT" and what in r["path"].lower()]


def test_management_creates_a_secure_account(cli: Cli, arm: FakeArm, azure_admin: AzureAdmin, prefix: str) -> None:
    account = azure_admin.account.name  # linked to Azurite: the SAS is verified for real
    result = azure(cli, "--prefix", prefix, "--account", account, "--location", "northeurope")
    assert result.exit_code == 0, result.output
    assert "verify: all 28 probes match the grant" in result.stderr
    [group] = [r for r in arm_puts(arm, "/resourcegroups/") if "/providers/" not in r["path"]]
    assert group["path"].endswith(f"/resourcegroups/provision-{account}")
    marks = {"provision:env": "default", "provision:grant": prefix,  # owner marks: env, grant, state id
             "provision:state": json.loads((Path(os.environ["PROVISION_STATE_DIR"]) / "default.json").read_text())[
                 "state_id"]}
    assert group["body"] == {"location": "northeurope", "tags": marks}
    [put] = [r for r in arm_puts(arm, "/storageaccounts/") if "/blobservices/" not in r["path"].lower()]
    assert put["body"] == {
        "sku": {"name": "Standard_LRS"}, "kind": "StorageV2", "location": "northeurope",
        "tags": marks,
        "properties": {"allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_2",
                       "supportsHttpsTrafficOnly": True, "allowCrossTenantReplication": False}}
    containers = arm_puts(arm, "/blobservices/default/containers/")
    assert [r["path"].rsplit("/", 1)[1] for r in containers] == [f"{prefix}-public", f"{prefix}-private"]
    assert all(r["body"] == {"properties": {"publicAccess": "None", "metadata": {
        "provisionenv": "default", "provisiongrant": prefix, "provisionstate": marks["provision:state"]}}}
        for r in containers)
    assert all(r["query"]["api-version"] for r in arm.requests)
    state = read_grant("default")
    assert [(r["kind"], r["name"], r["created"], r["parent"]) for r in state["resources"]] == [
        ("resource_group", f"provision-{account}", True, SUBSCRIPTION),
        ("storage_account", account, True, f"provision-{account}"),
        ("container", f"{prefix}-public", True, account), ("container", f"{prefix}-private", True, account)]
    assert state["grant"]["region"] == "northeurope"
    assert state["grant"]["endpoint"] == azure_admin.endpoint.account_url()

    arm.reset_log()
    azure_admin.reset_log()
    again = azure(cli, "--prefix", prefix, "--account", account, "--location", "northeurope")
    assert again.exit_code == 0, again.output
    assert arm.requests and arm.mutating() == [] and azure_admin.mutating() == []
    assert read_grant("default")["grant"] == state["grant"]

    done = cli("destroy", "--yes")
    assert done.exit_code == 0, done.output
    assert (arm.groups, arm.accounts, arm.containers) == ({}, {}, {})
    assert not any(c.name.startswith(prefix) for c in azure_admin.blob.list_containers())


def test_management_dry_run_plans_everything_and_writes_nothing(cli: Cli, arm: FakeArm, prefix: str,
                                                                 workdir: Path) -> None:
    result = azure(cli, "--prefix", prefix, "--account", "dryacct", "--full", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert arm.requests and arm.mutating() == []
    assert not any(r["path"].endswith("/listKeys") for r in arm.requests)
    changes = [(c["action"], c["kind"], c["name"]) for c in json.loads(result.stdout)["changes"]]
    assert changes == [("create", "resource_group", "provision-dryacct"), ("create", "storage_account", "dryacct"),
                       ("create", "container", f"{prefix}-public"), ("create", "container", f"{prefix}-private"),
                       ("issue", "sas", "dryacct")]
    assert not (workdir / ".provision" / "default.json").exists()
    assert (arm.groups, arm.accounts, arm.containers) == ({}, {}, {})


def test_status_finds_a_deleted_container(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    clean = json.loads(cli("status", "--env", "sandbox", "--json").stdout)
    assert clean["in_sync"] is True, clean
    azure_admin.blob.delete_container(f"{prefix}-private")
    azure_admin.reset_log()
    result = cli("status", "--env", "sandbox", "--json")
    assert result.exit_code == 6, result.output  # drift found
    assert azure_admin.mutating() == []
    rows = json.loads(result.stdout)["rows"]
    assert [(r["resource"], r["name"], r["problem"].split(":")[0]) for r in rows] == [
        ("container", f"{prefix}-private", "missing")]
    assert rows[0]["fix"].startswith(f"provision azure --env sandbox --grant {prefix} --prefix {prefix} --readonly")


def test_adopted_insecure_account_is_reported_and_hardened_only_on_request(cli: Cli, arm: FakeArm,
                                                                         prefix: str) -> None:
    arm.add_account("legacy-rg", "legacyacct", allowBlobPublicAccess=True, minimumTlsVersion="TLS1_0",
                    supportsHttpsTrafficOnly=False, allowCrossTenantReplication=True)
    args = ["--prefix", prefix, "--account", "legacyacct", "--resource-group", "legacy-rg", "--no-verify"]
    result = azure(cli, *args, "--json")
    assert result.exit_code == 0, result.output
    notes = [c["detail"] for c in json.loads(result.stdout)["changes"] if c["kind"] == "storage_account"]
    assert "INSECURE, not changed (pass --harden to fix): wants blob public access off, TLS 1.2 minimum, HTTPS only, " \
           "no cross-tenant replication" in notes
    assert [r for r in arm.mutating() if "/storageaccounts/legacyacct" == r["path"].lower()[-27:]] == []
    assert not any(r["method"] == "PATCH" for r in arm.requests)
    result = azure(cli, *args, "--harden")
    assert result.exit_code == 0, result.output
    [patch] = [r for r in arm.requests if r["method"] == "PATCH"]
    assert patch["body"] == {"properties": {"allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_2",
                                            "supportsHttpsTrafficOnly": True, "allowCrossTenantReplication": False}}
    arm.reset_log()
    assert azure(cli, *args).exit_code == 0
    assert arm.mutating() == []  # hardened: nothing left to change
    done = cli("destroy", "--yes")
    assert done.exit_code == 0, done.output
    assert "legacyacct" in arm.accounts and "legacy-rg" in arm.groups  # adopted: never deleted
    assert arm.containers == {}  # the containers it created are gone


def test_keyless_assigns_the_blob_role_on_each_container(cli: Cli, arm: FakeArm, prefix: str) -> None:
    args = ["--prefix", prefix, "--account", "keylessacct", "--keyless", PRINCIPAL.upper()]
    result = azure(cli, *args)
    assert result.exit_code == 0, result.output
    puts = arm_puts(arm, "/providers/microsoft.authorization/roleassignments/")
    assert len(puts) == 2
    for put, container in zip(puts, (f"{prefix}-public", f"{prefix}-private"), strict=True):
        scope = AzureProvider.container_scope(SUBSCRIPTION, "provision-keylessacct", "keylessacct", container)
        assert put["path"].lower().startswith(scope.lower() + "/providers/microsoft.authorization/roleassignments/")
        assert put["body"] == {"properties": {
            "roleDefinitionId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
                                f"{READER}", "principalId": PRINCIPAL, "principalType": "ServicePrincipal"}}
    state = read_grant("default")
    assert state["grant"]["auth"] == {"kind": "ambient"}
    assert not any(r["method"] == "POST" and r["path"].endswith("/listKeys") for r in arm.requests)  # no secret read
    assert [r["kind"] for r in state["resources"]].count("role_assignment") == 2
    arm.reset_log()
    assert azure(cli, *args).exit_code == 0
    assert arm.mutating() == []
    arm.reset_log()
    assert azure(cli, *args, "--full", "--yes").exit_code == 0  # widening a deployed grant needs --yes
    kinds = [(r["method"], r["body"]["properties"]["roleDefinitionId"].rsplit("/", 1)[1] if r["body"] else None)
             for r in arm.mutating()]
    assert sorted(kinds, key=str) == sorted([("DELETE", None), ("DELETE", None), ("PUT", CONTRIBUTOR),
                                             ("PUT", CONTRIBUTOR)], key=str)
    assert len(arm.roles) == 2
    assert cli("destroy", "--yes").exit_code == 0
    assert (arm.roles, arm.containers, arm.accounts, arm.groups) == ({}, {}, {}, {})


def test_subscription_choice(cli: Cli, arm: FakeArm, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    arm.subscriptions = [SUBSCRIPTION, "99999999-2222-3333-4444-555555555555"]
    result = azure(cli, "--prefix", prefix, "--account", "subacct", "--no-verify")
    assert result.exit_code == 2 and "2 enabled Azure subscriptions" in result.stderr
    assert arm.mutating() == []
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    arm.reset_log()
    result = azure(cli, "--prefix", prefix, "--account", "subacct", "--no-verify")
    assert result.exit_code == 0, result.output
    assert not any(r["path"] == "/subscriptions" for r in arm.requests)
    assert all(r["path"].startswith(f"/subscriptions/{SUBSCRIPTION}/") for r in arm.requests)
    assert cli("destroy", "--yes").exit_code == 0


def test_taken_account_name_is_refused_before_anything_is_created(cli: Cli, arm: FakeArm, prefix: str) -> None:
    arm.taken.add("takenacct")
    result = azure(cli, "--prefix", prefix, "--account", "takenacct")
    assert result.exit_code == 3, result.output
    one_line_error(result)
    assert "'takenacct' is taken" in result.stderr
    assert arm.mutating() == []


def test_management_rotate_regenerates_key2_before_signing(cli: Cli, arm: FakeArm, prefix: str) -> None:
    args = ["--prefix", prefix, "--account", "rotateacct", "--no-verify"]
    assert azure(cli, *args).exit_code == 0
    old = read_grant("default")["grant"]["auth"]
    arm.reset_log()
    result = azure(cli, *args, "--rotate")
    assert result.exit_code == 0, result.output
    assert [(r["method"], r["path"].rsplit("/", 1)[1], r["body"]) for r in arm.mutating()] == [
        ("POST", "regenerateKey", {"keyName": "key2"})]
    new = read_grant("default")["grant"]["auth"]
    fields = sas_fields(new["token"])
    expected = issue_sas("rotateacct", arm.keys["rotateacct"]["key2"], Access.readonly, _instant(fields["st"]),
                         _instant(fields["se"]))
    assert sas_fields(expected)["sig"] == fields["sig"] != sas_fields(old["token"])["sig"]
    assert "revokes every SAS signed with it" in result.stderr
    assert cli("destroy", "--yes").exit_code == 0


def test_management_account_key_is_key1(cli: Cli, arm: FakeArm, azure_admin: AzureAdmin, prefix: str) -> None:
    result = azure(cli, "--prefix", prefix, "--account", azure_admin.account.name, "--account-key")
    assert result.exit_code == 0, result.output
    assert read_grant("default")["grant"]["auth"]["secret_key"] == azure_admin.account.key1
    assert cli("destroy", "--yes").exit_code == 0


def test_management_fault_at_every_step_converges(cli: Cli, arm: FakeArm, prefix: str) -> None:
    args = ["--prefix", prefix, "--account", "faultacct", "--full", "--no-verify"]
    assert azure(cli, *args).exit_code == 0
    steps = len(arm.mutating())
    assert steps == 4  # resource group, account, 2 containers
    assert cli("destroy", "--yes").exit_code == 0
    for k in range(1, steps + 1):
        arm.reset_log()
        arm.fail(k, count=1, status=400, code="InvalidRequest")
        failed = azure(cli, *args)
        arm.fail(None)
        assert failed.exit_code in (3, 4), (k, failed.output)
        one_line_error(failed)
        again = azure(cli, *args)
        assert again.exit_code == 0, (k, again.output)
        assert len(arm.containers) == 2 and "faultacct" in arm.accounts
        assert cli("destroy", "--yes").exit_code == 0, k
        assert (arm.groups, arm.accounts, arm.containers) == ({}, {}, {}), k


# ---- data: objects, migrate, links, manifest ----------------------------------------------------------------------
def test_objects_store_reads_ranges_and_reports_md5(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert azure(cli, f"{prefix}-obj", "--env", "sandbox", "--readonly").exit_code == 0
    from provision.objects import open_store

    state = StateStore("sandbox").load().one(None, "the test")
    writer = open_store(state, f"{prefix}-obj", write=True)
    writer.put_bytes("b/2.txt", b"hello world")
    writer.put_bytes("a/1.txt", b"")
    reader = open_store(state, f"{prefix}-obj")
    listed = list(reader.list())
    assert [(o.key, o.size, o.etag) for o in listed] == [
        ("a/1.txt", 0, hashlib.md5(b"").hexdigest()), ("b/2.txt", 11, hashlib.md5(b"hello world").hexdigest())]
    assert reader.read_range("b/2.txt", 6, 100) == b"world"
    assert reader.read_range("a/1.txt", 0, 10) == b""
    assert reader.head("missing") is None
    assert reader.head("b/2.txt").etag == hashlib.md5(b"hello world").hexdigest()
    assert reader.url_scheme == "azure"
    with pytest.raises(CloudRefused, match="PutBlob"):
        reader.put_bytes("c.txt", b"x")  # the read-only SAS is the reader's credential


def make_tree(root: Path, prefix: str) -> dict[tuple[str, str], bytes]:
    contents = {
        ("public", "videos/big clip.mp4"): os.urandom(9 * MiB + 123),  # > 8 MiB: uploaded in blocks
        ("public", "images/2024/фото 1.jpg"): os.urandom(50_000),
        ("public", "images/empty.jpg"): b"",
        ("private", "ann/1.json"): b'{"a": 1}\n',
    }
    tree = {}
    for (kind, key), data in contents.items():
        path = root / "storage" / f"{prefix}-{kind}" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree[(f"{prefix}-{kind}", key)] = data
    return tree


def test_migrate_into_azure_and_rerun_uploads_nothing(cli: Cli, azure_admin: AzureAdmin, prefix: str,
                                                      workdir: Path) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    data_path = workdir / "data"
    tree = make_tree(data_path, prefix)
    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    total = sum(len(d) for d in tree.values())
    assert (doc["uploaded"], doc["uploaded_bytes"], doc["failed"]) == (len(tree), total, 0)
    for (bucket, key), data in tree.items():
        blob = azure_admin.blob.get_container_client(bucket).get_blob_client(key)
        assert hashlib.md5(blob.download_blob().readall()).digest() == hashlib.md5(data).digest(), key
        assert bytes(blob.get_blob_properties().content_settings.content_md5) == hashlib.md5(data).digest()
    props = azure_admin.blob.get_container_client(f"{prefix}-public").get_blob_client("images/2024/фото 1.jpg")
    assert props.get_blob_properties().content_settings.content_type == "image/jpeg"
    azure_admin.reset_log()
    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["uploaded"], doc["uploaded_bytes"], doc["skipped"]) == (0, 0, len(tree))
    assert azure_admin.mutating() == []


def test_links_list_azure_urls_in_key_order(cli: Cli, azure_admin: AzureAdmin, prefix: str, workdir: Path) -> None:
    assert azure(cli, "--env", "sandbox", "--prefix", prefix).exit_code == 0
    keys = ["a/1.jpg", "a/2.PNG", "a/3.txt", "b/5.jpg", "ü ñ/6 x.jpg", "top.png"]
    container = azure_admin.blob.get_container_client(f"{prefix}-public")
    for key in reversed(keys):
        container.upload_blob(key, b"x")
    result = cli("links", "--env", "sandbox", "--bucket", f"{prefix}-public")
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(f"azure://{prefix}-public/{k}\n" for k in sorted(keys))
    out = workdir / "links.txt"
    result = cli("links", "--env", "sandbox", "--ext", ".jpg", "--prefix", "a/", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == f"azure://{prefix}-public/a/1.jpg\n"


def _image(kind: str, size: tuple[int, int], orientation: int | None = None) -> bytes:
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    exif = Image.Exif()
    if orientation:
        exif[274] = orientation
    out = io.BytesIO()
    img.save(out, kind, exif=exif.tobytes() if len(exif) else b"")
    return out.getvalue()


def test_manifest_from_azure_headers(cli: Cli, azure_admin: AzureAdmin, prefix: str, workdir: Path) -> None:
    assert azure(cli, f"{prefix}-img", "--env", "sandbox", "--readonly").exit_code == 0
    container = azure_admin.blob.get_container_client(f"{prefix}-img")
    files = {"imgs/a.jpg": _image("JPEG", (640, 480)), "imgs/b.png": _image("PNG", (30, 20)),
             "imgs/sub/rot.jpg": _image("JPEG", (400, 100), orientation=6), "imgs/notes.txt": b"text"}
    for key, data in files.items():
        container.upload_blob(key, data)
    out = workdir / "manifest.jsonl"
    result = cli("manifest", "--env", "sandbox", "--prefix", "imgs/", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[:2] == ['{"version":"1.1"}', '{"type":"images"}']
    entries = [json.loads(line) for line in lines[2:]]
    assert [(e["name"], e["extension"], e["width"], e["height"]) for e in entries] == [
        ("a", ".jpg", 640, 480), ("b", ".png", 30, 20), ("sub/rot", ".jpg", 100, 400)]


def test_profile_with_connection_string_redacts_only_the_key() -> None:
    profile = Profile(provider="azure", prefix="acme", connection_string=(
        "DefaultEndpointsProtocol=https;AccountName=acmeprov;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"))
    given = profile.model_dump()
    provider = AzureProvider(profile)
    assert provider.data_plane and provider.resolved_inputs()["connection_string"] == (
        "DefaultEndpointsProtocol=https;AccountName=acmeprov;EndpointSuffix=core.windows.net;")
    assert profile.model_dump() == given  # check() keeps what it resolves on the provider, not in the profile
    access = provider.data_access()
    assert (access.name, access.blob_url, access.public) == ("acmeprov", "https://acmeprov.blob.core.windows.net",
                                                             True)
    assert access.key("key2") == "c2VjcmV0"
    grant = provider.grant(access, SasToken(account_name="acmeprov", token="sv=x", expires_at=datetime.now(
        timezone.utc)))
    assert (grant.endpoint, grant.endpoint_url) == ("https://acmeprov.blob.core.windows.net", None)


# ---- pure parts: SAS permissions, options, the probe table, the retry budget ------------------------------------
def test_sas_permissions_per_access() -> None:
    from provision.policies import SAS_RESOURCE_TYPES, SAS_SERVICES, sas_permissions
    from provision.providers.azure.sas import describe_sas

    assert sas_permissions(Access.readonly) == "rl"
    assert sas_permissions(Access.full) == "racwdl"
    assert (SAS_SERVICES, SAS_RESOURCE_TYPES) == ("b", "co")
    assert describe_sas(Access.readonly) == "ss=b srt=co sp=rl spr=https"
    assert describe_sas(Access.full) == "ss=b srt=co sp=racwdl spr=https"


def test_options_resolve_the_credential_without_changing_the_profile() -> None:
    from provision.errors import BadInput
    from provision.providers.azure.options import AzureOptions

    now = datetime(2027, 1, 1, tzinfo=timezone.utc)
    key = AzureOptions(account_key=True).credential(Access.readonly, False, now)
    assert (key.mode, key.access, key.principal_id) == ("account_key", Access.full, None)
    with pytest.raises(BadInput, match="--account-key cannot be read-only"):
        AzureOptions(account_key=True).credential(Access.readonly, True, now)
    keyless = AzureOptions(keyless=True, principal_id=PRINCIPAL.upper()).credential(Access.full, True, now)
    assert (keyless.mode, keyless.access, keyless.principal_id) == ("keyless", Access.full, PRINCIPAL)
    sas = AzureOptions(sas_expiry="12h", renew_before="2h").credential(Access.readonly, False, now)
    assert (sas.mode, sas.expiry.lifetime, sas.renew_before, sas.expiry_error) == (
        "sas", timedelta(hours=12), timedelta(hours=2), None)
    past = AzureOptions(sas_expiry="2026-01-01T00:00:00Z").credential(Access.readonly, False, now)
    assert past.expiry is None and "it is in the past" in str(past.expiry_error)
    for options, message in ((AzureOptions(principal_id=PRINCIPAL), "only used with --keyless"),
                             (AzureOptions(keyless=True), "needs the managed identity's principal id"),
                             (AzureOptions(keyless=True, principal_id=PRINCIPAL, renew_before="1d"),
                              "--renew-before applies to a SAS, not to --keyless"),
                             (AzureOptions(renew_before="0h"), "it must be positive")):
        with pytest.raises(BadInput, match=message):
            options.credential(Access.readonly, False, now)
    with pytest.raises(BadInput, match="--harden needs the management plane, which --env sandbox does not use"):
        AzureOptions(harden=True).check_plane(sandbox=True, data_plane=True)
    with pytest.raises(BadInput, match="no storage account given"):
        AzureOptions().check_plane(sandbox=False, data_plane=False)
    AzureOptions(account="acmeprov", subscription=SUBSCRIPTION).check_plane(sandbox=False, data_plane=False)
    assert AzureOptions(account="acmeprov").group == "provision-acmeprov"

    profile = Profile(provider="azure", prefix="acme", sandbox=True, account_key=True)
    given = profile.model_dump()
    inputs = AzureProvider(profile).resolved_inputs()
    assert profile.model_dump() == given and profile.access == Access.readonly
    assert inputs == dict(profile.model_dump(mode="json"), access="full")
    keyless_profile = Profile(provider="azure", prefix="acme", account="acmeprov", keyless=True,
                              principal_id=PRINCIPAL.upper())
    assert AzureProvider(keyless_profile).resolved_inputs()["principal_id"] == PRINCIPAL
    assert keyless_profile.principal_id == PRINCIPAL.upper()


def test_connection_string_choice() -> None:
    from provision.providers.azure.options import choose_connection_string, without_key

    full = "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=eA==;EndpointSuffix=core.windows.net"
    stored = without_key(full)
    assert stored == "DefaultEndpointsProtocol=https;AccountName=acme;EndpointSuffix=core.windows.net;"
    assert choose_connection_string(None, None) is None
    assert choose_connection_string(full, None) == full
    assert choose_connection_string(None, full) == full
    assert choose_connection_string(stored, full) == full  # the key comes from the environment
    other = full.replace("acme", "other")
    assert choose_connection_string(stored, other) == stored  # another account's key is not used
    assert choose_connection_string(full, other) == full


def _probe_rows(key_mode: bool, full: bool, other_account: bool) -> list[tuple[str, str, bool]]:
    from unittest.mock import MagicMock

    from provision.providers.azure.verify import ProbeNames, probe_table

    names = ProbeNames.new("t0")
    other = ("otheracct", MagicMock()) if other_account else None
    return [(p.operation, p.target, p.allowed)
            for p in probe_table(["c1", "c2"], MagicMock(), MagicMock(), names, key_mode, full, other)]


def test_probe_table_per_mode() -> None:
    """The probe table's expectation for an account SAS, readonly and full, is the SAS_TABLE Azurite enforced (the
    exact rows of every mode are asserted in tests/test_verify_probes.py), and every row of one name expects the
    same answer."""
    for full, column in ((False, 0), (True, 1)):
        expected: dict[str, str] = {}
        for operation, target, allowed in _probe_rows(key_mode=False, full=full, other_account=True):
            answer = "allow" if allowed else "deny"
            assert expected.setdefault(probe_name(operation, target), answer) == answer, (operation, target)
        assert expected == {op: sides[column] for op, sides in SAS_TABLE.items()}
    # what `provision azure` reports: with the sandbox's second account, and without one
    assert len(_probe_rows(key_mode=False, full=False, other_account=True)) == 31
    assert len(_probe_rows(key_mode=False, full=False, other_account=False)) == 28


def test_probe_outcome_and_runner() -> None:
    from provision.providers.azure.verify import outcome
    from provision.providers.base import Probe, run_probes

    def refused(status: int, code: str | None = None) -> HttpResponseError:
        exc = HttpResponseError("refused")
        exc.status_code = status
        exc.error_code = code  # type: ignore[attr-defined]
        return exc

    assert outcome(refused(403)) == "deny"
    assert outcome(refused(400, "AuthorizationResourceTypeMismatch")) == "deny"
    assert outcome(refused(404, "ContainerNotFound")) == "error: ContainerNotFound"
    assert outcome(refused(409)) == "error: 409"
    assert outcome(ValueError("not the service")) is None

    def deny() -> None:
        raise refused(403, "AuthorizationPermissionMismatch")

    rows = run_probes([Probe("GetBlob", "c/k", True, lambda: b"x"), Probe("PutBlob", "c/k", False, deny)], outcome)
    assert [(r.operation, r.expected, r.actual, r.ok) for r in rows] == [
        ("GetBlob", "allow", "allow", True), ("PutBlob", "deny", "deny", True)]


def test_sdk_attempts_set_the_retry_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from provision.errors import BadInput
    from provision.providers.azure.options import AzureOptions
    from provision.providers.azure.sdk import DEFAULT_RETRIES, AccountAccess, AzureSdk, retries
    from provision.providers.base import SDK_ATTEMPTS_ENV

    access = AccountAccess(name="acme", blob_url="https://acme.blob.core.windows.net", verify=True, keys=dict)
    monkeypatch.delenv(SDK_ATTEMPTS_ENV, raising=False)
    assert retries() == DEFAULT_RETRIES == 3
    assert AzureSdk.blob_service(access, "sv=x")._config.retry_policy.total_retries == 3
    monkeypatch.setenv(SDK_ATTEMPTS_ENV, "2")
    assert retries() == 1
    assert AzureSdk.blob_service(access, "sv=x")._config.retry_policy.total_retries == 1
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    client = AzureSdk(AzureOptions(), False, None).mgmt("storage", SUBSCRIPTION)
    assert client._config.retry_policy.total_retries == 1
    monkeypatch.setenv(SDK_ATTEMPTS_ENV, "0")
    with pytest.raises(BadInput, match="PROVISION_SDK_ATTEMPTS='0' is not a whole number of attempts"):
        retries()
