"""Nothing lost, leaked or orphaned on Azure Blob: owner marks (container metadata on the data plane; resource
tags and container metadata through Resource Manager) refuse a second environment's adoption without ``--adopt``;
an account SAS on an account holding containers outside the grant needs ``--shared-account``; ``--location`` is
checked before any call. Against Azurite (the sandbox) and the fake ARM server of tests/test_azure.py."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from tests.azure_fake import FakeArm
from tests.conftest import AzureAdmin, Cli, error_lines, read_grant

pytestmark = pytest.mark.usefixtures("no_azure_env")  # tests/fake_fixtures.py

SANDBOX_PROFILE = "sandbox: true\n"


def state_of(env: str) -> dict[str, Any]:
    return json.loads((Path.cwd() / ".provision" / f"{env}.json").read_text())


def sandbox_env(workdir: Path, name: str) -> str:
    """A second sandbox environment (its own profile, same Azurite account)."""
    (workdir / "envs" / f"{name}.yaml").write_text(SANDBOX_PROFILE)
    return name


def test_second_env_refuses_to_adopt_marked_containers(cli: Cli, azure_admin: AzureAdmin, prefix: str,
                                                       workdir: Path) -> None:
    other = sandbox_env(workdir, "other")
    first = cli("azure", "--env", "sandbox", "--prefix", prefix, "--full")
    assert first.exit_code == 0, first.output
    state_id = state_of("sandbox")["state_id"]
    metadata = {k.lower(): v for k, v in  # names are case-insensitive (the sandbox's proxy capitalises them)
                azure_admin.blob.get_container_client(f"{prefix}-public").get_container_properties().metadata.items()}
    assert metadata == {"provisionenv": "sandbox", "provisiongrant": prefix, "provisionstate": state_id}
    azure_admin.reset_log()
    refused = cli("azure", "--env", other, "--prefix", prefix)
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "'sandbox'" in lines[0] and "--adopt" in refused.stderr, refused.stderr
    assert azure_admin.mutating() == []
    assert not (workdir / ".provision" / "other.json").exists()
    adopted = cli("azure", "--env", other, "--prefix", prefix, "--adopt")
    assert adopted.exit_code == 0, adopted.output
    assert {(r["kind"], r["created"]) for r in state_of(other)["grants"][prefix]["resources"]} == {
        ("container", False)}
    assert cli("destroy", "--env", other, "--yes").exit_code == 0
    assert {c.name for c in azure_admin.blob.list_containers(name_starts_with=prefix)} == {
        f"{prefix}-public", f"{prefix}-private"}
    assert cli("verify", "--env", "sandbox").exit_code == 0
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert list(azure_admin.blob.list_containers(name_starts_with=prefix)) == []


def test_a_lost_create_answer_is_recognised_by_its_mark(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    """The container exists with this state's own mark but the state lost its record: tracked as created."""
    assert cli("azure", "--env", "sandbox", "--prefix", prefix, "--no-verify").exit_code == 0
    path = Path.cwd() / ".provision" / "sandbox.json"
    doc = json.loads(path.read_text())
    doc["grants"][prefix]["resources"] = [r for r in doc["grants"][prefix]["resources"]
                                          if r["name"] != f"{prefix}-public"]
    path.write_text(json.dumps(doc))
    again = cli("azure", "--env", "sandbox", "--prefix", prefix, "--no-verify")
    assert again.exit_code == 0, again.output
    assert (f"{prefix}-public", True) in {(r["name"], r["created"])
                                          for r in state_of("sandbox")["grants"][prefix]["resources"]}
    assert cli("destroy", "--env", "sandbox", "--yes").exit_code == 0
    assert list(azure_admin.blob.list_containers(name_starts_with=prefix)) == []


def test_sas_on_an_account_with_foreign_containers_needs_shared_account(
        cli: Cli, azure_admin: AzureAdmin, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = azure_admin.endpoint
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", endpoint.ca_file)
    azure_admin.blob.create_container(f"{prefix}-foreign")
    try:
        args = ["azure", f"{prefix}-cs", "--connection-string", endpoint.connection_string(), "--env", "cs"]
        azure_admin.reset_log()
        refused = cli(*args)
        assert refused.exit_code == 2, refused.output
        assert len(error_lines(refused)) == 1, refused.stderr
        assert "--shared-account" in refused.stderr and "outside the grant" in refused.stderr
        assert azure_admin.mutating() == []
        shared = cli(*args, "--shared-account", "--json")
        assert shared.exit_code == 0, shared.output
        assert any("outside the grant" in c["detail"] for c in json.loads(shared.stdout)["changes"])
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", endpoint.connection_string())
        assert cli("destroy", "--env", "cs", "--yes").exit_code == 0
    finally:
        azure_admin.blob.delete_container(f"{prefix}-foreign")


def test_management_foreign_container_and_marks(cli: Cli, arm: FakeArm, prefix: str) -> None:
    arm.add_account("provision-sharedacct", "sharedacct")
    arm.containers[("sharedacct", "someone-elses")] = {}
    arm.reset_log()
    refused = cli("azure", "--prefix", prefix, "--account", "sharedacct", "--no-verify")
    assert refused.exit_code == 2, refused.output
    assert "someone-elses" in refused.stderr and "--shared-account" in refused.stderr
    assert arm.mutating() == []
    ok = cli("azure", "--prefix", prefix, "--account", "sharedacct", "--no-verify", "--shared-account")
    assert ok.exit_code == 0, ok.output
    state_id = state_of("default")["state_id"]
    puts = [r for r in arm.requests if r["method"] == "PUT" and "/containers/" in r["path"]]
    assert all(r["body"]["properties"]["metadata"] == {"provisionenv": "default", "provisiongrant": prefix,
                                                       "provisionstate": state_id} for r in puts), puts
    assert cli("destroy", "--yes").exit_code == 0
    assert ("sharedacct", "someone-elses") in arm.containers

    fresh = cli("azure", "--prefix", prefix, "--account", "ownacct", "--no-verify")
    assert fresh.exit_code == 0, fresh.output
    tags = arm.accounts["ownacct"]["tags"]
    assert tags == {"provision:env": "default", "provision:grant": prefix,
                    "provision:state": state_of("default")["state_id"]}
    (Path.cwd() / "envs" / "second.yaml").write_text("provider: azure\n")
    arm.reset_log()
    again = cli("azure", "--env", "second", "--prefix", prefix, "--account", "ownacct", "--no-verify")
    assert again.exit_code == 2, again.output
    assert "'default'" in again.stderr and "--adopt" in again.stderr
    assert arm.mutating() == []
    assert cli("destroy", "--yes").exit_code == 0


@pytest.mark.parametrize("location", ["West Europe", "west-europe", "WESTEUROPE"])
def test_location_is_checked_before_any_call(cli: Cli, arm: FakeArm, location: str) -> None:
    result = cli("azure", "--prefix", "tloc", "--account", "locacct", "--location", location)
    assert result.exit_code == 2, result.output
    assert "invalid --location" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert arm.requests == []


# ---- two environments on one container set: hand-over on destroy, in either order -------------------------------
def metadata_of(azure_admin: AzureAdmin, container: str) -> dict[str, str]:
    return {k.lower(): v for k, v in
            azure_admin.blob.get_container_client(container).get_container_properties().metadata.items()}


@pytest.mark.parametrize("first", ["a", "b"])
def test_creator_or_adopter_destroys_first_and_the_other_keeps_working(
        cli: Cli, azure_admin: AzureAdmin, prefix: str, workdir: Path, first: str) -> None:
    for env in ("a", "b"):
        sandbox_env(workdir, env)
    assert cli("azure", "--env", "a", "--prefix", prefix, "--full", "--no-verify").exit_code == 0
    adopted = cli("azure", "--env", "b", "--prefix", prefix, "--full", "--adopt", "--no-verify")
    assert adopted.exit_code == 0, adopted.output
    ids = {env: state_of(env)["state_id"] for env in ("a", "b")}
    containers = [f"{prefix}-public", f"{prefix}-private"]
    for name in containers:
        meta = metadata_of(azure_admin, name)
        assert meta["provisionstate"] == ids["a"] and meta["provisionshared"] == f"{ids['b']}:{prefix}:b", meta
    again = cli("azure", "--env", "b", "--prefix", prefix, "--full", "--adopt", "--no-verify", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["changes"] == [] or all(
        c["action"] in ("no change", "adopt") for c in json.loads(again.stdout)["changes"]), again.output
    for env in ("a", "b"):
        assert cli("verify", "--env", env).exit_code == 0, env

    other = "b" if first == "a" else "a"
    done = cli("destroy", "--env", first, "--yes")
    assert done.exit_code == 0, done.output
    assert sorted(c.name for c in azure_admin.blob.list_containers(name_starts_with=prefix)) == sorted(containers)
    for name in containers:
        meta = metadata_of(azure_admin, name)
        assert meta["provisionstate"] == ids[other] and meta["provisionenv"] == other, meta
        assert "provisionshared" not in meta, meta
    checked = cli("verify", "--env", other)
    assert checked.exit_code == 0, checked.output
    assert {(r["name"], r["created"]) for r in state_of(other)["grants"][prefix]["resources"]} >= {
        (c, other == "a") for c in containers}
    assert cli("azure", "--env", other, "--prefix", prefix, "--full", "--no-verify").exit_code == 0  # converges
    final = cli("destroy", "--env", other, "--yes")
    assert final.exit_code == 0, final.output
    assert list(azure_admin.blob.list_containers(name_starts_with=prefix)) == []
    assert not (workdir / ".provision" / f"{other}.json").exists()


def test_management_creator_destroys_first_and_hands_account_over(cli: Cli, arm: FakeArm,
                                                                  prefix: str, workdir: Path) -> None:
    (workdir / "envs" / "b.yaml").write_text("provider: azure\n")
    assert cli("azure", "--prefix", prefix, "--account", "handacct", "--no-verify").exit_code == 0
    refused = cli("azure", "--env", "b", "--prefix", prefix, "--account", "handacct", "--no-verify")
    assert refused.exit_code == 2 and "--adopt" in refused.stderr, refused.output
    adopted = cli("azure", "--env", "b", "--prefix", prefix, "--account", "handacct", "--no-verify", "--adopt")
    assert adopted.exit_code == 0, adopted.output
    ids = {env: state_of(env)["state_id"] for env in ("default", "b")}
    assert arm.accounts["handacct"]["tags"]["provision:shared"] == f"{ids['b']}:{prefix}:b"
    b_sas = read_grant("b")["grant"]["auth"]["token"]
    arm.reset_log()
    done = cli("destroy", "--yes")
    assert done.exit_code == 0, done.output
    assert [r for r in arm.requests if r["method"] == "DELETE"] == []
    assert not [r for r in arm.mutating() if r["path"].lower().endswith("/regeneratekey")]  # b's SAS lives
    assert arm.accounts["handacct"]["tags"]["provision:state"] == ids["b"]
    assert "provision:shared" not in arm.accounts["handacct"]["tags"]
    assert {(arm.containers.get(("handacct", f"{prefix}-{s}")) or {}).get("metadata", {}).get("provisionstate")
            for s in ("public", "private")} == {ids["b"]}
    user = BlobServiceClient(f"{arm.url}/handacct", credential=b_sas, connection_verify=os.environ[
        "REQUESTS_CA_BUNDLE"], retry_total=0)
    assert list(user.get_container_client(f"{prefix}-public").list_blobs()) == []
    final = cli("destroy", "--env", "b", "--yes")
    assert final.exit_code == 0, final.output
    assert "handacct" not in arm.accounts and not [k for k in arm.containers if k[0] == "handacct"]
    assert arm.groups == {} or all(g["name"] != "provision-handacct" for g in arm.groups.values())


# ---- destroy revokes the SAS of an account this state owns ---------------------------------------------------------
def test_destroy_regenerates_key2_and_the_rendered_sas_is_refused(cli: Cli, arm: FakeArm,
                                                                   prefix: str) -> None:
    assert cli("azure", "--prefix", prefix, "--account", "revokeacct", "--full", "--no-verify").exit_code == 0
    sas = read_grant("default")["grant"]["auth"]["token"]
    key1, key2 = arm.keys["revokeacct"]["key1"], arm.keys["revokeacct"]["key2"]
    user = BlobServiceClient(f"{arm.url}/revokeacct", credential=sas, connection_verify=os.environ[
        "REQUESTS_CA_BUNDLE"], retry_total=0)
    assert list(user.get_container_client(f"{prefix}-public").list_blobs()) == []  # the SAS works
    arm.reset_log()
    arm.fail(at=2, count=2)  # the first deletion is refused (twice: the SDK retries once): the account stays
    broken = cli("destroy", "--yes")
    assert broken.exit_code != 0, broken.output
    (regenerate, *_) = arm.mutating()
    assert regenerate["method"] == "POST" and regenerate["path"].lower().endswith("/regeneratekey")
    assert regenerate["body"] == {"keyName": "key2"}
    assert arm.keys["revokeacct"]["key1"] == key1 and arm.keys["revokeacct"]["key2"] != key2
    with pytest.raises(HttpResponseError) as refused:
        list(user.get_container_client(f"{prefix}-public").list_blobs())
    assert refused.value.status_code == 403
    arm.fail(None)
    done = cli("destroy", "--yes")
    assert done.exit_code == 0, done.output
    assert "stays valid" not in done.output and "revokeacct" not in arm.accounts


def test_destroy_on_an_adopted_account_prints_how_to_revoke(cli: Cli, arm: FakeArm, prefix: str) -> None:
    arm.add_account("provision-sharedacct", "sharedacct")
    ok = cli("azure", "--prefix", prefix, "--account", "sharedacct", "--no-verify")
    assert ok.exit_code == 0, ok.output
    expires = read_grant("default")["grant"]["auth"]["expires_at"]
    arm.reset_log()
    done = cli("destroy", "--yes")
    assert done.exit_code == 0, done.output
    assert not [r for r in arm.mutating() if r["path"].lower().endswith("/regeneratekey")]
    assert ("az storage account keys renew --account-name sharedacct --resource-group provision-sharedacct "
            "--key secondary") in done.output
    stamp = datetime.fromisoformat(expires).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"still valid: sas of sharedacct stays valid until {stamp} (UTC)" in done.output, done.output
    assert "adopted, never deleted): sas" not in done.output


def test_sandbox_destroy_says_the_sas_stays_valid(cli: Cli, azure_admin: AzureAdmin, prefix: str) -> None:
    assert cli("azure", "--env", "sandbox", "--prefix", prefix, "--no-verify").exit_code == 0
    sas = read_grant("sandbox")["grant"]["auth"]["token"]
    azure_admin.blob.create_container(f"{prefix}-keep")
    try:
        done = cli("destroy", "--env", "sandbox", "--yes")
        assert done.exit_code == 0, done.output
        assert "stays valid until" in done.output and "Azurite keys are fixed" in done.output, done.output
        user = azure_admin.client(sas).get_container_client(f"{prefix}-keep")
        assert list(user.list_blobs()) == []  # the limit: the emulator cannot revoke it (fixed keys)
    finally:
        azure_admin.blob.delete_container(f"{prefix}-keep")
