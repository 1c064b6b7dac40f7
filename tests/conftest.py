"""Shared fixtures: one enforcing moto server (the real sandbox code) for the whole session, a private state
directory and working directory per test, a CLI runner, and admin clients for assertions.

Every SDK makes at most `SDK_ATTEMPTS` attempts per request in tests (``PROVISION_SDK_ATTEMPTS``, the first one
included): an injected 500 still goes through the SDK's real retry path once, without its full back-off. A fault
meant to make an operation fail for good uses ``count >= SDK_ATTEMPTS`` (the suites use far more); one meant to be
absorbed by a retry uses ``count < SDK_ATTEMPTS``."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from provision import sandbox
from provision.cli import app

REPO = Path(__file__).resolve().parent.parent
SDK_ATTEMPTS = 2
"""Attempts per SDK request in tests (the first included), set for the whole session."""


@pytest.fixture(scope="session", autouse=True)
def sdk_attempts() -> Iterator[None]:
    """``PROVISION_SDK_ATTEMPTS`` = `SDK_ATTEMPTS` for the session (each provider's client seam honours it)."""
    old = os.environ.get("PROVISION_SDK_ATTEMPTS")
    os.environ["PROVISION_SDK_ATTEMPTS"] = str(SDK_ATTEMPTS)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PROVISION_SDK_ATTEMPTS", None)
        else:
            os.environ["PROVISION_SDK_ATTEMPTS"] = old


@contextmanager
def listing_pages(endpoint_url: str, max_keys: int) -> Iterator[None]:
    """While inside, every object listing through the sandbox service at ``endpoint_url`` answers at most
    ``max_keys`` entries per page (``/_sandbox/limits``), so a few dozen objects make a multi-page listing."""
    sandbox.control(endpoint_url, "limits", {"max_keys": max_keys})
    try:
        yield
    finally:
        sandbox.control(endpoint_url, "limits", {})


@pytest.fixture(scope="session")
def sandbox_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.SandboxInfo]:
    """The sandbox (moto server with IAM enforcement on 127.0.0.1, free port), started once and stopped."""
    directory = tmp_path_factory.mktemp("sandbox")
    old = os.environ.get("PROVISION_SANDBOX_DIR")
    os.environ["PROVISION_SANDBOX_DIR"] = str(directory)
    info, started = sandbox.up()
    assert started
    if os.environ.get("PROVISION_REQUIRE_AZURITE") and info.azure is None:
        sandbox.down()
        pytest.fail("Azurite is required (PROVISION_REQUIRE_AZURITE) but was not found; run `make install`")
    try:
        yield info
    finally:
        sandbox.down()
        if old is None:
            os.environ.pop("PROVISION_SANDBOX_DIR", None)
        else:
            os.environ["PROVISION_SANDBOX_DIR"] = old


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own directory with its own state and profile directories, and no AWS env leaking in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROVISION_STATE_DIR", str(tmp_path / ".provision"))
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "sandbox.yaml").write_text((REPO / "envs" / "sandbox.yaml").read_text())
    monkeypatch.setenv("PROVISION_ENVS_DIR", str(envs))
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "PROVISION_GCP_IAM_ENDPOINT",
                "AZURE_STORAGE_CONNECTION_STRING", "AZURE_SUBSCRIPTION_ID", "PROVISION_AZURE_ARM_ENDPOINT",
                "IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return tmp_path


@pytest.fixture
def prefix() -> str:
    """A bucket prefix no other test uses (all tests share one server)."""
    return f"t{uuid.uuid4().hex[:10]}"


class Cli:
    """Runs the real Typer app in-process and keeps stdout and stderr apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()


class Admin:
    """Admin-credential clients and the server's request log, for assertions."""

    def __init__(self, info: sandbox.SandboxInfo) -> None:
        self.info = info
        kwargs = dict(endpoint_url=info.s3.endpoint_url, region_name=info.s3.region,
                      aws_access_key_id=info.s3.access_key, aws_secret_access_key=info.s3.secret_key)
        self.s3 = boto3.client("s3", config=boto3.session.Config(s3={"addressing_style": "path"}), **kwargs)
        self.iam = boto3.client("iam", **kwargs)

    def client(self, service: str, access_key: str, secret_key: str) -> Any:
        return boto3.client(service, endpoint_url=self.info.s3.endpoint_url, region_name=self.info.s3.region,
                            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                            config=boto3.session.Config(s3={"addressing_style": "path"},
                                                        retries={"max_attempts": 1}))

    def reset_log(self) -> None:
        sandbox.control(self.info.s3.endpoint_url, "requests/reset")

    def log(self) -> list[dict[str, Any]]:
        return sandbox.request_log(self.info.s3.endpoint_url)

    def mutating(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if e["mutating"]]


@pytest.fixture
def admin(sandbox_info: sandbox.SandboxInfo) -> Admin:
    return Admin(sandbox_info)


def read_state(env: str = "sandbox") -> dict[str, Any]:
    """The state file of ``env`` in the current test's state directory."""
    return json.loads((Path(os.environ["PROVISION_STATE_DIR"]) / f"{env}.json").read_text())


def error_lines(result: Any) -> list[str]:
    """The stderr lines of ``result`` without the warnings about a secret given as an argument
    (`provision.cli.SECRET_ARGUMENTS`: ``warning: --token puts a secret ...``)."""
    from provision.cli import SECRET_ARGUMENTS

    lines = result.stderr.strip().splitlines()
    return [line for line in lines if not (line.startswith("warning: ") and line.split()[1] in SECRET_ARGUMENTS)]


def read_grant(env: str = "sandbox", name: str | None = None) -> dict[str, Any]:
    """One grant's record (``provider``, ``inputs``, ``grant``, ``resources``...) in the state file of ``env``:
    ``["grants"][name]``, or the only grant of the environment when ``name`` is None (asserting there is one)."""
    grants = read_state(env)["grants"]
    if name is None:
        assert len(grants) == 1, f"environment {env!r} holds {len(grants)} grants: {list(grants)}"
        return next(iter(grants.values()))
    return grants[name]


def single_grant_state(env: str, grant: Any, provider: str | None = None, name: str = "default",
                       **fields: Any) -> Any:
    """A v2 `provision.state.State` of ``env`` holding one `GrantState` ``name`` with ``grant`` (its provider
    defaults to the grant's); ``fields`` go to the GrantState (``inputs``, ``resources``...)."""
    from provision.state import GrantState, State

    provider = provider or (grant.provider if grant is not None else None)
    return State(env=env, grants={name: GrantState(provider=provider, grant=grant, **fields)})


class AzureAdmin:
    """The sandbox's Azure Blob endpoint (Azurite over HTTPS) with the account's key1, and its request log."""

    def __init__(self, info: sandbox.SandboxInfo) -> None:
        from azure.storage.blob import BlobServiceClient

        self.endpoint = info.require_azure()
        self.account = self.endpoint.account
        self.blob = BlobServiceClient(self.endpoint.account_url(), credential={
            "account_name": self.account.name, "account_key": self.account.key1},
            connection_verify=self.endpoint.ca_file)

    def client(self, credential: Any, account: str | None = None) -> Any:
        """A BlobServiceClient for ``account`` (default the sandbox account) with ``credential`` (a SAS string, a
        key dict...), no retries, trusting the sandbox certificate."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.endpoint.account_url(account), credential=credential,
                                 connection_verify=self.endpoint.ca_file, retry_total=0)

    def reset_log(self) -> None:
        sandbox.control(self.endpoint.blob_url, "requests/reset")

    def log(self) -> list[dict[str, Any]]:
        return sandbox.request_log(self.endpoint.blob_url)

    def mutating(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if e["mutating"]]


@pytest.fixture
def azure_admin(sandbox_info: sandbox.SandboxInfo) -> AzureAdmin:
    if sandbox_info.azure is None:
        pytest.skip("Azurite is not installed (run `make install`)")
    return AzureAdmin(sandbox_info)


class GcsAdmin:
    """The sandbox's GCS emulator (anonymous; it enforces no IAM) and its request log."""

    def __init__(self, info: sandbox.SandboxInfo) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.endpoint = info.require_gcs()
        self.storage = storage.Client(project=self.endpoint.project, credentials=AnonymousCredentials(),
                                      client_options={"api_endpoint": self.endpoint.endpoint_url})

    def reset_log(self) -> None:
        sandbox.control(self.endpoint.endpoint_url, "requests/reset")

    def log(self) -> list[dict[str, Any]]:
        return sandbox.request_log(self.endpoint.endpoint_url)

    def mutating(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if e["mutating"]]


@pytest.fixture
def gcs_admin(sandbox_info: sandbox.SandboxInfo) -> GcsAdmin:
    return GcsAdmin(sandbox_info)


@pytest.fixture(params=["s3", "azure", "gcs", "s3-minio"])
def harness(request: pytest.FixtureRequest, sandbox_info: sandbox.SandboxInfo) -> Any:
    """One provider of the contract suites at a time (tests/harnesses.py): its command and its emulator."""
    from tests import harnesses

    if request.param == "s3":
        return harnesses.S3(Admin(sandbox_info))
    if request.param == "s3-minio":
        return harnesses.S3Minio(Admin(sandbox_info))
    if request.param == "azure":
        return harnesses.Azure(request.getfixturevalue("azure_admin"))
    return harnesses.Gcs(GcsAdmin(sandbox_info))


# ---- the stand-ins' fixtures (arm, google, cvat, no_azure_env, no_google_env), defined once in a plugin module ----
pytest_plugins = ["tests.fake_fixtures"]
