"""Nothing lost, leaked or orphaned on Azure Blob: owner marks (container metadata on the data plane; resource
tags and container metadata through Resource Manager) refuse a second environment's adoption without ``--adopt``;
an account SAS on an account holding containers outside the grant needs ``--shared-account``; ``--location`` is
checked before any call. Against Azurite (the sandbox) and the fake ARM server of tests/test_azure.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.azure_fake import FakeArm
from tests.conftest import AzureAdmin, Cli
from tests.test_azure import arm, no_azure_env  # noqa: F401 - fixtures

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
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "--shared-account" in refused.stderr and "outside the grant" in refused.stderr
        assert azure_admin.mutating() == []
        shared = cli(*args, "--shared-account", "--json")
        assert shared.exit_code == 0, shared.output
        assert any("outside the grant" in c["detail"] for c in json.loads(shared.stdout)["changes"])
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", endpoint.connection_string())
        assert cli("destroy", "--env", "cs", "--yes").exit_code == 0
    finally:
        azure_admin.blob.delete_container(f"{prefix}-foreign")


def test_management_foreign_container_and_marks(cli: Cli, arm: FakeArm, prefix: str) -> None:  # noqa: F811
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
def test_location_is_checked_before_any_call(cli: Cli, arm: FakeArm, location: str) -> None:  # noqa: F811
    result = cli("azure", "--prefix", "tloc", "--account", "locacct", "--location", location)
    assert result.exit_code == 2, result.output
    assert "invalid --location" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert arm.requests == []
