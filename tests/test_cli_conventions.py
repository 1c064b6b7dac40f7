"""CLI conventions: ``-h`` is ``--help``, an Examples section and human metavars in every help, ``--version``,
shell completion, docs/cli.md generated from the code, ``--json`` as exactly one JSON document on stdout (errors
included), exit 6 for drift and 1 for a declined destroy, unbroken lines outside a terminal, the install command in
a missing extra's message, and the SDKs' own emulator variables (STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL,
AZURE_STORAGE_CONNECTION_STRING)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.main

from provision import errors, sandbox
from provision.cli import app, version
from provision.providers.gcp import SANDBOX_NOTE
from tests.conftest import REPO, Admin, Cli

# ---- help, metavars, examples, version, completion, docs ------------------------------------------------------
spec = importlib.util.spec_from_file_location("cli_docs", REPO / "scripts" / "cli_docs.py")
cli_docs = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(cli_docs)  # type: ignore[union-attr]
ROOT = (("provision", typer.main.get_command(app)),)
COMMANDS = [[name for name, _ in chain][1:] for chain in cli_docs.commands(ROOT)]
LEAVES = [path for path in COMMANDS if path and path[-1] not in ("sandbox", "cvat")]


def test_the_command_list_is_complete() -> None:
    assert {" ".join(p) for p in LEAVES} == {"s3", "azure", "gcs", "render-env", "verify", "status", "destroy",
                                             "migrate", "links", "manifest", "sandbox up", "sandbox down",
                                             "sandbox status", "cvat attach"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "root")
def test_dash_h_is_help_with_examples_and_human_metavars(cli: Cli, path: list[str]) -> None:
    long, short = cli(*path, "--help"), cli(*path, "-h")
    assert long.exit_code == short.exit_code == 0
    assert long.stdout == short.stdout and "Usage:" in long.stdout
    assert "Examples:\n    provision" in long.stdout or "Examples:\n  provision" in long.stdout, long.stdout
    assert re.findall(r"<(?:str|int|float|bool|path|list\[[^>]*\]|text|integer)[^>]*>", long.stdout) == []


def test_root_help_documents_every_exit_code(cli: Cli) -> None:
    text = cli("--help").stdout
    for code, meaning in errors.EXIT_CODES.items():
        assert f"  {code}  {meaning}" in text
    assert set(errors.EXIT_CODES) == {0, 1, 2, 3, 4, 5, 6}


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"provision {version()}\n"
    from provision import __version__

    assert version() == __version__  # a checkout run: no provision-cv metadata, the package's own


def run_module(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script's entry point (``provision.cli:main``) as ``provision``, in a subprocess."""
    code = "import sys; sys.argv[0] = 'provision'; from provision.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO), **env))


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _provision_completion provision"),
                                           ("zsh", "compdef _provision_completion provision")])
def test_completion_script(shell: str, marker: str) -> None:
    result = run_module(_PROVISION_COMPLETE=f"source_{shell}")  # what --show-completion prints in that shell
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and f"_PROVISION_COMPLETE=complete_{shell}" in result.stdout
    shown = run_module("--show-completion", shell, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert shown.returncode == 0 and shown.stdout.strip() == result.stdout.strip()


def test_completion_completes_commands_and_flags() -> None:
    result = run_module(_PROVISION_COMPLETE="complete_bash", COMP_WORDS="provision sand", COMP_CWORD="1")
    assert "sandbox" in result.stdout.split()
    result = run_module(_PROVISION_COMPLETE="complete_bash", COMP_WORDS="provision s3 --end",
                        COMP_CWORD="2")
    assert result.stdout.split() == ["--endpoint-url"]


def test_docs_cli_md_is_what_the_code_generates() -> None:
    assert (REPO / "docs" / "cli.md").read_text() == cli_docs.render(), "run python scripts/cli_docs.py"


# ---- --json: one document on stdout, errors included ------------------------------------------------------------
def one_document(result: Any) -> Any:
    """The one JSON document on stdout (json.loads fails on anything before or after it)."""
    return json.loads(result.stdout)


@pytest.mark.parametrize("args", [
    ["s3", "Bad_Bucket"], ["azure", "--account", "UPPER", "c1"], ["gcs", "bucket-one"], ["render-env"], ["verify"],
    ["status"], ["destroy", "--yes"], ["migrate", "--data-path", "."], ["links"], ["manifest"],
    ["cvat", "attach", "--url", "http://127.0.0.1:9"]], ids=lambda a: " ".join(a[:2]))
def test_json_errors_are_one_document(cli: Cli, args: list[str]) -> None:
    result = cli(*args, "--json")
    assert result.exit_code == 2, result.output
    document = one_document(result)
    assert set(document) == {"error", "hint", "exit_code"} and document["exit_code"] == 2
    assert document["error"] and "\n" not in document["error"]
    assert "error:" in result.stderr  # the human line still goes to stderr


def test_usage_errors_under_json_are_one_document() -> None:
    result = run_module("s3", "--no-such-flag", "--json")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and "--no-such-flag" in document["error"]


def test_sandbox_json_lists_services_as_data(cli: Cli, sandbox_info: sandbox.SandboxInfo,
                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    status = one_document(cli("sandbox", "status", "--json"))
    up = one_document(cli("sandbox", "up", "--json"))
    assert status["running"] is True and up["started"] is False and up["services"] == status["services"]
    services = {s["service"]: s for s in status["services"]}
    assert set(services) == {"s3", "minio", "azure", "gcs"}
    assert all(set(s) == {"service", "endpoint", "port", "pid"} for s in services.values())
    assert services["s3"] == {"service": "s3", "endpoint": sandbox_info.s3.endpoint_url,
                              "port": int(sandbox_info.s3.endpoint_url.rsplit(":", 1)[1]), "pid": sandbox_info.pid}
    monkeypatch.setenv("PROVISION_SANDBOX_DIR", str(tmp_path / "no-sandbox"))  # never stop the shared one
    down = cli("sandbox", "down", "--json")
    assert down.exit_code == 0 and one_document(down) == {"stopped": False, "running": False}
    stopped = cli("sandbox", "status", "--json")
    assert stopped.exit_code == 1 and one_document(stopped)["running"] is False


def test_links_json_holds_the_links(cli: Cli, admin: Admin, prefix: str, tmp_path: Path) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    admin.s3.put_object(Bucket=f"{prefix}-public", Key="a/1.jpg", Body=b"x")
    result = cli("links", "--env", "sandbox", "--json")
    assert result.exit_code == 0, result.output
    document = one_document(result)
    assert document["links"] == [f"s3://{prefix}-public/a/1.jpg"] and document["total"] == 1
    to_file = one_document(cli("links", "--env", "sandbox", "--json", "--out", str(tmp_path / "l.txt")))
    assert to_file["links"] is None and to_file["out"] == str(tmp_path / "l.txt")
    assert (tmp_path / "l.txt").read_text() == f"s3://{prefix}-public/a/1.jpg\n"


def test_status_exits_6_on_drift_with_one_document(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    assert cli("status", "--env", "sandbox", "--json").exit_code == 0
    admin.s3.delete_bucket(Bucket=f"{prefix}-private")
    result = cli("status", "--env", "sandbox", "--json")
    assert result.exit_code == 6
    document = one_document(result)
    assert document["in_sync"] is False and document["exit_code"] == 6 and "drifted" in document["error"]
    assert any(r["name"] == f"{prefix}-private" for r in document["rows"])


def test_verify_mismatches_are_a_table_before_the_error(cli: Cli, admin: Admin, prefix: str) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    user = f"provision-{prefix}-readonly"
    admin.iam.put_user_policy(UserName=user, PolicyName="provision-buckets", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    result = cli("verify", "--env", "sandbox")
    assert result.exit_code == 5
    table, _, error = result.stderr.partition("error:")
    assert "mismatches" in table and "WRONG" in table and error.count("\n") == 1
    as_json = cli("verify", "--env", "sandbox", "--json")
    document = one_document(as_json)
    assert as_json.exit_code == 5 and document["ok"] is False and document["exit_code"] == 5


# ---- prompts, wording, wrapping ---------------------------------------------------------------------------------
def test_declining_destroy_exits_1_and_deletes_nothing(cli: Cli, admin: Admin, prefix: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix).exit_code == 0
    from provision.cli import env as env_commands

    monkeypatch.setattr(env_commands, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    result = cli("destroy", "--env", "sandbox", input="n\n")
    assert result.exit_code == 1
    assert "aborted, nothing deleted" in result.stderr
    assert result.stdout.strip() in ("", "n")  # CliRunner echoes the typed answer there
    names = {b["Name"] for b in admin.s3.list_buckets()["Buckets"]}
    assert {f"{prefix}-public", f"{prefix}-private"} <= names


def test_lines_are_not_wrapped_outside_a_terminal(cli: Cli, admin: Admin, prefix: str, workdir: Path) -> None:
    result = cli("s3", "--env", "sandbox", "--prefix", prefix)
    line = next(x for x in result.stderr.splitlines() if x.startswith("state: "))
    assert len(line) > 120 and "Next: provision render-env --env sandbox --out DIR" in line
    assert str(workdir / ".provision" / "sandbox.json") in line


def test_rotate_that_rerendered_does_not_ask_for_render_env(cli: Cli, admin: Admin, prefix: str,
                                                            workdir: Path) -> None:
    first = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full")
    assert first.exit_code == 0, first.output
    (workdir / "sv").mkdir()
    assert cli("render-env", "--env", "sandbox", "--out", str(workdir / "sv")).exit_code == 0
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full", "--rotate")
    assert result.exit_code == 0, result.output
    assert "re-rendered" in result.stderr and "Next: provision render-env" not in result.stderr


def test_counts_and_articles() -> None:
    assert [errors.counted(n, "object version") for n in (0, 1, 2)] == [
        "0 object versions", "1 object version", "2 object versions"]
    assert [errors.a_or_an(p) for p in ("azure", "s3", "gcs")] == ["an azure", "an s3", "a gcs"]


# ---- the install command of a missing extra ---------------------------------------------------------------------
def test_missing_extra_names_the_command_of_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv"
    assert errors.install_command("gcs", str(venv)) == f"{venv}/bin/python -m pip install 'provision-cv[gcs]'"
    monkeypatch.setenv("PIPX_HOME", str(tmp_path / "pipx"))
    piped = str(tmp_path / "pipx" / "venvs" / "provision-cv")
    assert errors.installed_by_pipx(piped) and not errors.installed_by_pipx(str(venv))
    assert errors.install_command("gcs", piped).startswith("pipx inject provision-cv '")
    assert errors.installed_by_pipx("/home/u/.local/share/pipx/venvs/provision-cv")  # the default home
    missing = errors.MissingExtra("google.cloud.storage", "gcs")
    assert missing.exit_code == 2 and "pip install 'provision-cv[gcs]'" in str(missing) and "\n" not in str(missing)


# ---- the SDKs' own emulator variables ---------------------------------------------------------------------------
def test_storage_emulator_host_is_an_anonymous_emulator(cli: Cli, gcs_admin: Any, prefix: str,
                                                        sandbox_info: sandbox.SandboxInfo,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox_info.gcs is not None
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", sandbox_info.gcs.endpoint_url.removeprefix("http://"))
    result = cli("gcs", "--prefix", prefix, "--keyless", "--json")  # no --env sandbox, no ADC, no --project
    assert result.exit_code == 0, result.output
    skipped = {(c["kind"], c["detail"]) for c in one_document(result)["changes"] if c["action"] == "no change"}
    assert ("service_account", f"skipped: {SANDBOX_NOTE}") in skipped
    assert {f"{prefix}-public", f"{prefix}-private"} <= {b.name for b in gcs_admin.storage.list_buckets()}
    keyed = cli("gcs", "--prefix", prefix, "--json")
    assert keyed.exit_code == 2 and SANDBOX_NOTE in one_document(keyed)["error"]


def test_aws_endpoint_url_keeps_working(cli: Cli, admin: Admin, prefix: str, sandbox_info: sandbox.SandboxInfo,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox_info.s3.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", sandbox_info.s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sandbox_info.s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", sandbox_info.s3.region)
    result = cli("s3", "--prefix", prefix, "--json")  # no --env sandbox: the SDK's own variable
    assert result.exit_code == 0, result.output
    assert {f"{prefix}-public", f"{prefix}-private"} <= {b["Name"] for b in admin.s3.list_buckets()["Buckets"]}
    grant = one_document(result)["grant"]
    assert f"http://{grant['endpoint']}:{grant['port']}" == sandbox_info.s3.endpoint_url


def test_azure_storage_connection_string_keeps_working(cli: Cli, azure_admin: Any, prefix: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = azure_admin.endpoint
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", endpoint.ca_file)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", endpoint.connection_string())
    # no --connection-string: the variable; --shared-account: the sandbox's Azurite account holds other tests'
    # containers, which the account SAS would reach
    result = cli("azure", f"{prefix}-cs", "--env", "cs", "--shared-account", "--json")
    assert result.exit_code == 0, result.output
    assert one_document(result)["grant"]["endpoint"] == endpoint.account_url()
    assert f"{prefix}-cs" in {c.name for c in azure_admin.blob.list_containers()}


def test_sandbox_up_names_every_service_it_runs(cli: Cli, sandbox_info: sandbox.SandboxInfo) -> None:
    """The human report lists the MinIO endpoint too, with the flag that reaches it (issue: self-hosted S3)."""
    up = cli("sandbox", "up")
    assert up.exit_code == 0, up.output
    lines = {line.split()[0]: line for line in up.stderr.splitlines()[1:]}
    assert list(lines) == ["s3", "minio", "azure", "gcs"], up.stderr
    assert sandbox_info.minio is not None and sandbox_info.minio.endpoint_url in lines["minio"]
    assert "--issuer minio" in lines["minio"]
