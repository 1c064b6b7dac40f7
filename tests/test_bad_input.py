"""Bad input: exit 2, one line naming the problem and the fix, and nothing created or changed anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.models import Access, Grant, KeyPair
from provision.state import StateStore
from tests.conftest import Admin, Cli, single_grant_state

LONG = "r" * 65

CASES = {
    "uppercase bucket": (["s3", "--env", "sandbox", "Bad_Bucket"], "invalid bucket name"),
    "short bucket": (["s3", "--env", "sandbox", "ab"], "3–63 characters"),
    "ip bucket": (["s3", "--env", "sandbox", "192.168.1.1"], "IP address"),
    "reserved prefix": (["s3", "--env", "sandbox", "xn--bucket"], "reserved"),
    "adjacent periods": (["s3", "--env", "sandbox", "a..bucket"], "adjacent periods"),
    "trailing hyphen": (["s3", "--env", "sandbox", "bucket-"], "begin and end"),
    "reserved suffix": (["s3", "--env", "sandbox", "data-s3alias"], "reserved"),
    "uppercase prefix": (["s3", "--env", "sandbox", "--prefix", "Acme"], "invalid --prefix"),
    "readonly and full": (["s3", "--env", "sandbox", "--prefix", "acme", "--readonly", "--full"], "mutually exclusive"),
    "role and user": (["s3", "--env", "sandbox", "--prefix", "acme", "--iam-role", "r", "--user", "u"],
                      "mutually exclusive"),
    "no bucket": (["s3", "--env", "sandbox"], "no bucket given"),
    "bucket and prefix": (["s3", "--env", "sandbox", "acme-x", "--prefix", "acme"], "not both"),
    "repeated bucket": (["s3", "--env", "sandbox", "acme-x", "acme-x"], "repeat"),
    "bad user name": (["s3", "--env", "sandbox", "--prefix", "acme", "--user", "bad user!"], "invalid --user"),
    "long role name": (["s3", "--env", "sandbox", "--prefix", "acme", "--iam-role", LONG], "1–64"),
    "env escapes state dir": (["s3", "--env", "../etc", "--prefix", "acme"], "invalid --env"),
    "endpoint not a URL": (["s3", "--env", "sandbox", "--prefix", "acme", "--endpoint-url", "ftp://x"],
                           "endpoint_url"),
    "unknown profile field": (["s3", "--env", "typo", "--prefix", "acme"], "acces"),
    "profile not yaml": (["s3", "--env", "broken", "--prefix", "acme"], "not valid YAML"),
    "profile not a mapping": (["s3", "--env", "listy", "--prefix", "acme"], "mapping"),
    "profile of another provider": (["s3", "--env", "azprofile", "--prefix", "acme"], "azure profile"),
    "render before provision": (["render-env", "--env", "nosuch", "--out", "."], "nothing provisioned"),
    "render into missing dir": (["render-env", "--env", "ready", "--out", "/nonexistent/dir"], "not an existing"),
    "render into a file": (["render-env", "--env", "ready", "--out", "afile"], "not an existing"),
    "render unknown target": (["render-env", "--env", "ready", "--target", "nonsense"], "unknown --target"),
    "verify before provision": (["verify", "--env", "nosuch"], "nothing to verify"),
    "corrupt state file": (["render-env", "--env", "corrupt"], "corrupt"),
}


@pytest.fixture
def prepared(workdir: Path) -> Path:
    envs = workdir / "envs"
    (envs / "typo.yaml").write_text("provider: s3\nacces: full\n")
    (envs / "broken.yaml").write_text("provider: s3\nbuckets: [a, b\n")
    (envs / "listy.yaml").write_text("- s3\n- acme\n")
    (envs / "azprofile.yaml").write_text("provider: azure\n")
    (workdir / "afile").write_text("not a directory\n")
    StateStore("ready").save(single_grant_state("ready", Grant(
        provider="s3", storage_provider="minio", access=Access.readonly, buckets=["acme-public"],
        endpoint="s3.amazonaws.com", port=443, auth=KeyPair(access_key="AKIA", secret_key="s"))))
    (workdir / ".provision" / "corrupt.json").write_text("{not json")
    return workdir


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, cli: Cli, admin: Admin, prepared: Path) -> None:
    args, needle = CASES[name]
    before = snapshot(prepared)
    admin.reset_log()
    result = cli(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and " — " in lines[0], "names the problem, then the fix"
    assert needle in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert admin.mutating() == []
    assert snapshot(prepared) == before


def test_sandbox_not_running_is_bad_input(cli: Cli, admin: Admin, monkeypatch: pytest.MonkeyPatch,
                                          workdir: Path) -> None:
    monkeypatch.setenv("PROVISION_SANDBOX_DIR", str(workdir / "no-sandbox"))
    admin.reset_log()
    result = cli("s3", "--env", "sandbox", "--prefix", "acme")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: the sandbox is not running — start it with: provision sandbox up"
    assert admin.log() == []
    assert not (workdir / ".provision" / "sandbox.json").exists()


def test_policy_over_iam_size_limit(cli: Cli, admin: Admin) -> None:
    buckets = [f"bucket-number-{i:03d}-with-a-long-name" for i in range(40)]
    admin.reset_log()
    result = cli("s3", "--env", "sandbox", *buckets)
    assert result.exit_code == 2
    assert "over IAM's inline limit of 2048" in result.stderr
    assert admin.log() == []


# ---- a secret given as a command-line argument -------------------------------------------------------------------
CVAT_TOKEN = "tok-3c1f9a7e5b2d4c8a"


@pytest.mark.parametrize("flag, var, extra", [
    ("--token", "CVAT_ACCESS_TOKEN", ["cvat", "attach", "--env", "nosuch", "--url", "http://127.0.0.1:9"]),
    ("--password", "CVAT_PASSWORD", ["cvat", "attach", "--env", "nosuch", "--url", "http://127.0.0.1:9",
                                     "--username", "admin"]),
])
def test_secret_argument_warns_and_env_var_does_not(cli: Cli, monkeypatch: pytest.MonkeyPatch, flag: str, var: str,
                                                    extra: list[str]) -> None:
    warning = (f"warning: {flag} puts a secret in your shell history and the process list — set {var} instead")
    given = cli(*extra, flag, CVAT_TOKEN)
    assert given.exit_code == 2  # nothing provisioned in 'nosuch': the warning comes first all the same
    assert given.stderr.splitlines()[0] == warning
    assert CVAT_TOKEN not in given.output
    monkeypatch.setenv(var, CVAT_TOKEN)
    from_env = cli(*extra)
    assert from_env.exit_code == 2 and "warning:" not in from_env.stderr
    assert "nothing provisioned" in from_env.stderr and CVAT_TOKEN not in from_env.output


def test_connection_string_argument_warns_without_echoing_it(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "c2VjcmV0LWtleS1ub3QtdG8tYmUtZWNob2Vk"
    result = cli("azure", "--env", "sandbox", "--prefix", "acme", "--connection-string",
                 f"DefaultEndpointsProtocol=https;AccountName=svstore01;AccountKey={secret}")
    assert result.exit_code == 2
    warning, error = result.stderr.strip().splitlines()
    assert warning == ("warning: --connection-string puts a secret in your shell history and the process list — "
                       "set AZURE_STORAGE_CONNECTION_STRING instead")
    assert error.startswith("error: --connection-string does not apply to --env sandbox")
    assert secret not in result.output


# ---- rotate: the report names the revoked key, not the new one ------------------------------------------------------
def test_rotate_reports_the_old_key_as_deleted(cli: Cli, admin: Admin, prefix: str) -> None:
    import json

    from tests.conftest import read_grant

    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--full").exit_code == 0
    old = read_grant(name=prefix)["grant"]["auth"]["access_key"]
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--rotate", "--json")
    assert result.exit_code == 0, result.output
    new = read_grant(name=prefix)["grant"]["auth"]["access_key"]
    assert new != old
    changes = [(c["action"], c["kind"], c["name"]) for c in json.loads(result.stdout)["changes"]]
    assert ("delete", "access_key", old) in changes
    assert ("delete", "access_key", new) not in changes and ("issue", "access_key", new) in changes

    older = new
    table = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--rotate")
    assert table.exit_code == 0, table.output
    newest = read_grant(name=prefix)["grant"]["auth"]["access_key"]
    deleted = [line for line in table.stderr.splitlines() if "delete" in line and "access_key" in line]
    assert len(deleted) == 1 and older in deleted[0] and newest not in deleted[0], table.stderr


def test_rotate_with_nothing_to_rotate_is_bad_input(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    admin.reset_log()
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--rotate")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: nothing to rotate: environment 'sandbox' holds no credential for grant "
                                     f"{prefix!r} — drop --rotate to create it, or pass the --grant NAME of an "
                                     "existing grant")
    assert admin.mutating() == [] and not (workdir / ".provision").exists()


def test_scripts_are_warned_too(cli: Cli) -> None:
    """A script's ``--token "$TOKEN"`` still shows the value in the process list: the warning is not TTY-only."""
    result = cli("cvat", "attach", "--env", "nosuch", "--url", "http://127.0.0.1:9", "--token", CVAT_TOKEN)
    warning, error = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and warning.startswith("warning: --token") and error.startswith("error: ")
    assert CVAT_TOKEN not in result.output
