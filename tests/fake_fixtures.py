"""Fixtures of the cloud and platform stand-ins, defined once for every test module (a pytest plugin registered by
tests/conftest.py): the fake Azure Resource Manager (`arm`), the fake Google project (`google`), the CVAT stand-in
(`cvat`), and the fixtures keeping the machine's Azure / Google configuration out (`no_azure_env`,
`no_google_env`; not autouse: a module wanting them for every test says
``pytestmark = pytest.mark.usefixtures(...)``, and `arm` / `google` always request theirs first)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provision import sandbox
from provision.providers.gcp import IAM_ENDPOINT_ENV
from tests.azure_fake import IDENTITY_HEADER, FakeArm
from tests.cvat_fake import FakeCvat
from tests.gcp_fake import FakeGoogle

PROJECT = "proj-test"
"""The Google Cloud project of the `google` fixture."""


@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Azure credential, subscription or connection string leaks in from the machine."""
    for var in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_SUBSCRIPTION_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
                "AZURE_TENANT_ID", "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_CLIENT_CERTIFICATE_PATH", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
                "IMDS_ENDPOINT", "PROVISION_AZURE_ARM_ENDPOINT", "AZURE_TOKEN_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", "/nonexistent-azure-config")


@pytest.fixture
def arm(no_azure_env: None, sandbox_info: sandbox.SandboxInfo, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Iterator[FakeArm]:
    """The fake ARM server (tests/azure_fake.py), linked to Azurite when the sandbox has it, with azure-identity's
    App Service managed identity pointed at it and its certificate trusted (REQUESTS_CA_BUNDLE); stopped after the
    test."""
    if sandbox_info.azure is not None:
        directory = sandbox.sandbox_dir()
        cert, key = directory / "cert.pem", directory / "key.pem"  # one CA for the fake and Azurite
    else:
        cert, key = sandbox._make_certificate(tmp_path)
    fake = FakeArm(cert, key, azurite=sandbox_info.azure).start()
    monkeypatch.setenv("PROVISION_AZURE_ARM_ENDPOINT", fake.url)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def no_google_env(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """No Google configuration leaks in from the machine: no ADC, no gcloud, no metadata server, no emulator."""
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", IAM_ENDPOINT_ENV, "GOOGLE_CLOUD_PROJECT",
                "API_ENDPOINT_OVERRIDE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(workdir / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@contextmanager
def fake_google_project(emulator_url: str, project: str, monkeypatch: pytest.MonkeyPatch,
                        workdir: Path) -> Iterator[FakeGoogle]:
    """While inside, ``project`` is a real-project setup on loopback: ADC (GOOGLE_APPLICATION_CREDENTIALS) is a
    service-account JSON written in ``workdir`` whose token endpoint is the started `FakeGoogle`; IAM admin is the
    fake (gRPC); Cloud Storage is the fake in front of the GCS emulator at ``emulator_url`` (STORAGE_EMULATOR_HOST),
    enforcing bucket IAM per caller. Yields the fake, stopped on exit (``monkeypatch`` undoes the variables)."""
    fake = FakeGoogle(emulator_url, project).start()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.write_admin_credentials(workdir / "adc.json")))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.http_url)
    monkeypatch.setenv(IAM_ENDPOINT_ENV, fake.iam_endpoint)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def google(no_google_env: None, sandbox_info: sandbox.SandboxInfo, monkeypatch: pytest.MonkeyPatch,
           workdir: Path) -> Iterator[FakeGoogle]:
    """A real-project setup of `PROJECT` on loopback (tests/gcp_fake.py): ADC is a service-account JSON whose token
    endpoint is the fake; IAM admin is the fake (gRPC); Cloud Storage is the fake in front of the sandbox's GCS
    emulator (STORAGE_EMULATOR_HOST), enforcing bucket IAM per caller; stopped after the test."""
    with fake_google_project(sandbox_info.require_gcs().endpoint_url, PROJECT, monkeypatch, workdir) as fake:
        yield fake


@pytest.fixture
def cvat() -> Iterator[FakeCvat]:
    """The CVAT stand-in (tests/cvat_fake.py) on a free port of 127.0.0.1, closed after the test."""
    server = FakeCvat()
    try:
        yield server
    finally:
        server.close()
