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
