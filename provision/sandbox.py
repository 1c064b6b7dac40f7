"""The embedded local cloud (shared/DESIGN.md "The embedded default").

``provision sandbox up`` starts, each on 127.0.0.1 with a free port: an S3 + IAM + STS endpoint that enforces IAM
policies (moto server with auth switched on after an admin key is made), Azurite for Azure Blob (over HTTPS with a
certificate made for the sandbox, so https-only SAS tokens are really checked; two storage accounts with key1 and
key2), and a GCS emulator. It records the endpoints and admin credentials in
``<state dir>/sandbox/endpoints.json`` (0600). ``--env sandbox`` (``envs/sandbox.yaml``) points every provider
command at it. ``.provision/sandbox.json`` stays what it is for every env: the state of ``--env sandbox``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from provision.errors import BadInput, MissingExtra
from provision.files import atomic_write, process_running
from provision.state import private_dir, state_dir

SANDBOX_REGION = "us-east-1"
ADMIN_USER = "sandbox-admin"
START_TIMEOUT = 60.0
"""Seconds to wait for the emulator to bind its port."""


class S3Endpoint(BaseModel):
    """The sandbox's S3 + IAM + STS endpoint and its admin access key."""

    endpoint_url: str
    region: str
    access_key: str
    secret_key: str


class AzureAccount(BaseModel):
    """An Azurite storage account with its two keys (base64)."""

    name: str
    key1: str
    key2: str


class AzureEndpoint(BaseModel):
    """The sandbox's Azure Blob endpoint (Azurite behind the logging proxy, HTTPS).

    Attributes:
        blob_url: ``https://127.0.0.1:PORT``; an account's blob endpoint is ``<blob_url>/<account>`` (path style).
        ca_file: the sandbox's self-signed certificate (PEM), to trust for this endpoint.
        account: the account `provision azure --env sandbox` uses.
        other: a second account, for "another account's data is unreachable" checks.
    """

    blob_url: str
    ca_file: str
    account: AzureAccount
    other: AzureAccount

    def account_url(self, account: str | None = None) -> str:
        """The blob endpoint of ``account`` (default: the sandbox account)."""
        return f"{self.blob_url}/{account or self.account.name}"

    def connection_string(self, account: AzureAccount | None = None) -> str:
        """A connection string for ``account`` (default: the sandbox account) with key1."""
        acct = account or self.account
        return (f"DefaultEndpointsProtocol=https;AccountName={acct.name};AccountKey={acct.key1};"
                f"BlobEndpoint={self.account_url(acct.name)};")


class GcsEndpoint(BaseModel):
    """The sandbox's Cloud Storage endpoint (the GCS emulator behind the logging proxy; anonymous, no IAM).

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT`` (what ``STORAGE_EMULATOR_HOST`` would hold).
        project: the project id the sandbox reports.
    """

    endpoint_url: str
    project: str = "sandbox"


class MinioEndpoint(BaseModel):
    """The sandbox's MinIO endpoint: MinIO's admin API (users, canned policies, service accounts) and S3, backed
    by the enforcing S3 emulator; it answers with ``Server: MinIO``. Root credentials = the S3 admin key.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT``.
        access_key, secret_key: the root credential (``consoleAdmin`` on a real MinIO).
    """

    endpoint_url: str
    access_key: str
    secret_key: str


class SandboxInfo(BaseModel):
    """What ``sandbox up`` records: the server pid, its endpoints, when it started (UTC). ``azure`` is None when
    Azurite is not installed."""

    pid: int
    s3: S3Endpoint
    gcs: GcsEndpoint | None = None
    azure: AzureEndpoint | None = None
    minio: MinioEndpoint | None = None
    started_at: datetime

    def require_azure(self) -> AzureEndpoint:
        """The Azure endpoint. Raises BadInput when Azurite was not found at ``sandbox up``."""
        if self.azure is None:
            raise BadInput("the running sandbox has no Azure Blob endpoint (Azurite was not found when it started)",
                           "install Node.js 20+ (npm), then `provision sandbox down` and `provision sandbox up` "
                           "(Azurite is installed on first use)")
        return self.azure

    def require_gcs(self) -> GcsEndpoint:
        """The GCS endpoint. Raises BadInput when the sandbox was started without it."""
        if self.gcs is None:
            raise BadInput("the running sandbox has no Cloud Storage endpoint",
                           "restart it: `provision sandbox down` then `provision sandbox up`")
        return self.gcs


AZURITE_PACKAGE = "azurite@3.35"
"""The npm package (and major.minor) of Azurite the sandbox runs and installs on first use."""
AZURITE_ENV = "PROVISION_AZURITE"
"""Environment variable: the ``azurite-blob`` executable to use, or ``off`` for a sandbox without Azure."""


def azurite_prefixes() -> list[Path]:
    """The npm prefixes searched for Azurite, in order: ``<sys.prefix>/node`` (``make install`` puts it beside the
    venv), the checkout's ``.venv/node`` (when `provision` runs from a checkout, e.g. with ``PYTHONPATH``), and
    ``<user cache>/node`` (platformdirs ``user_cache_path("provision")``), where `install_azurite` puts it."""
    from platformdirs import user_cache_path

    checkout = Path(__file__).resolve().parent.parent / ".venv" / "node"
    prefixes = [Path(sys.prefix) / "node", checkout, user_cache_path("provision") / "node"]
    return list(dict.fromkeys(prefixes))


def _executable(path: str | Path | None) -> str | None:
    return str(path) if path and Path(path).is_file() and os.access(path, os.X_OK) else None


def azurite_binary() -> str | None:
    """The ``azurite-blob`` executable: ``$PROVISION_AZURITE``, else one on ``PATH``, else one under an
    `azurite_prefixes` entry (``<prefix>/node_modules/.bin/azurite-blob``); None when there is none (or
    ``$PROVISION_AZURITE`` is ``off``)."""
    chosen = os.environ.get(AZURITE_ENV)
    if chosen:
        return None if chosen == "off" else _executable(chosen)
    found = _executable(shutil.which("azurite-blob"))
    for prefix in azurite_prefixes():
        found = found or _executable(prefix / "node_modules" / ".bin" / "azurite-blob")
    return found


def install_azurite(notify: Callable[[str], None]) -> str | None:
    """Install `AZURITE_PACKAGE` with npm into ``<user cache>/node`` (the last of `azurite_prefixes`), once; npm's
    progress goes to stderr.

    Args:
        notify: receives one line before the install, or why there is none (npm missing, or it failed).

    Returns:
        The ``azurite-blob`` executable, or None when npm is missing or the install failed (the sandbox then runs
        without Azure).
    """
    npm = shutil.which("npm")
    prefix = azurite_prefixes()[-1]
    if npm is None:
        notify("npm not found: the sandbox starts without Azure (install Node.js 20+, then `provision sandbox down` "
               "and `provision sandbox up` to get Azurite)")
        return None
    notify(f"installing Azurite ({AZURITE_PACKAGE}) into {prefix} with npm, once; this takes a minute")
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", AZURITE_PACKAGE],
                          stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), check=False)
    found = _executable(prefix / "node_modules" / ".bin" / "azurite-blob")
    if done.returncode != 0 or found is None:
        notify(f"npm could not install {AZURITE_PACKAGE} (exit {done.returncode}): the sandbox starts without Azure")
        return None
    return found


def _make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (ten years), as ``cert.pem`` and ``key.pem`` (0600)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provision sandbox")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _account(name: str) -> AzureAccount:
    return AzureAccount(name=name, key1=base64.b64encode(secrets.token_bytes(64)).decode(),
                        key2=base64.b64encode(secrets.token_bytes(64)).decode())


def sandbox_dir() -> Path:
    """``$PROVISION_SANDBOX_DIR`` or ``<state dir>/sandbox``: endpoints.json, the server log (``sandbox.log``),
    the certificate and Azurite's files; 0700, every file in it 0600 (signatures are masked in the log)."""
    return Path(os.environ.get("PROVISION_SANDBOX_DIR") or state_dir() / "sandbox").absolute()


def _info_path() -> Path:
    return sandbox_dir() / "endpoints.json"


def is_running(pid: int) -> bool:
    """True while process ``pid`` exists (the sandbox server's, as recorded in endpoints.json)."""
    return process_running(pid)


def read_info() -> SandboxInfo | None:
    """The running sandbox's info, or None when none is recorded or its process is gone."""
    path = _info_path()
    if not path.exists():
        return None
    info = SandboxInfo.model_validate_json(path.read_text())
    return info if process_running(info.pid) else None


def require_info() -> SandboxInfo:
    """The running sandbox's info.

    Raises:
        BadInput: no sandbox is running.
    """
    info = read_info()
    if info is None:
        raise BadInput("the sandbox is not running", "start it with: provision sandbox up")
    return info


def up(notify: Callable[[str], None] = lambda _line: None) -> tuple[SandboxInfo, bool]:
    """Start the sandbox unless it is already running. Azure Blob needs Azurite (`azurite_binary`); when none is
    found it is installed on first use (`install_azurite`), and without npm the sandbox runs without Azure.

    Args:
        notify: receives one-line notes (installing Azurite, or starting without it).

    Returns:
        (info, started): ``started`` is False when a running sandbox was found and reused.

    Raises:
        MissingExtra: moto or the GCS emulator is not installed (the ``sandbox`` extra).
        ProvisionError: the emulators did not start within `START_TIMEOUT` seconds (names the log file).
    """
    existing = read_info()
    if existing is not None:
        return existing, False
    try:
        import gcp_storage_emulator  # noqa: F401
        import moto  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(exc.name or "moto", "sandbox") from None
    directory = sandbox_dir()
    private_dir(directory)
    directory.chmod(0o700)  # whatever the umask, or the mode an older run left
    ready = directory / "ports.json"
    ready.unlink(missing_ok=True)
    command = [sys.executable, "-m", "provision.sandbox_server", "--ready", str(ready)]
    env = dict(os.environ)
    azurite = azurite_binary()
    if azurite is None and os.environ.get(AZURITE_ENV) != "off":
        azurite = install_azurite(notify)
    accounts = None
    if azurite:
        cert, key = _make_certificate(directory)
        accounts = (_account("provisionsandbox"), _account("othersandbox"))
        env["AZURITE_ACCOUNTS"] = ";".join(f"{a.name}:{a.key1}:{a.key2}" for a in accounts)
        data = directory / "azurite"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(mode=0o700)
        command += ["--azurite", azurite, "--cert", str(cert), "--key", str(key), "--data", str(data)]
    log_fd = os.open(directory / "sandbox.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(log_fd, 0o600)  # the log names endpoints and holds the emulators' output: private like the keys
    log = os.fdopen(log_fd, "ab")
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=directory,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise BadInput(f"the sandbox did not start; see {directory / 'sandbox.log'}", "fix the cause and retry")
        time.sleep(0.05)
    ports = json.loads(ready.read_text())
    ready.unlink()  # it holds the admin secret; sandbox.json (0600) keeps what is needed
    s3 = S3Endpoint.model_validate(ports["admin"])
    minio = MinioEndpoint(endpoint_url=f"http://127.0.0.1:{ports['minio']}", access_key=s3.access_key,
                          secret_key=s3.secret_key)
    azure = None
    if ports.get("azure") and accounts:
        azure = AzureEndpoint(blob_url=f"https://127.0.0.1:{ports['azure']}", ca_file=str(directory / "cert.pem"),
                              account=accounts[0], other=accounts[1])
    info = SandboxInfo(pid=proc.pid, s3=s3, gcs=GcsEndpoint(endpoint_url=f"http://127.0.0.1:{ports['gcs']}"),
                       azure=azure, minio=minio, started_at=datetime.now(timezone.utc))
    atomic_write(_info_path(), info.model_dump_json(indent=2).encode())
    return info, True


def _make_admin(endpoint: str) -> S3Endpoint:
    """Create the admin user and key while moto's auth is off, then switch enforcement on."""
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=SANDBOX_REGION,
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(
        UserName=ADMIN_USER,
        PolicyName="allow-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=10).read()
    return S3Endpoint(
        endpoint_url=endpoint, region=SANDBOX_REGION, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"]
    )


def down() -> bool:
    """Stop the sandbox. Returns True when one was running. Its data is gone with it (kept in memory)."""
    path = _info_path()
    if not path.exists():
        return False
    info = SandboxInfo.model_validate_json(path.read_text())
    running = process_running(info.pid)
    if running:
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while process_running(info.pid) and time.monotonic() < deadline:
            _reap(info.pid)
            time.sleep(0.05)
        if process_running(info.pid):
            os.kill(info.pid, signal.SIGKILL)
            _reap(info.pid)
    path.unlink(missing_ok=True)
    return running


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _context(endpoint_url: str) -> Any:
    """An SSL context trusting the sandbox's certificate for an https endpoint (None for http)."""
    if not endpoint_url.startswith("https://"):
        return None
    import ssl

    return ssl.create_default_context(cafile=str(sandbox_dir() / "cert.pem"))


def request_log(endpoint_url: str) -> list[dict[str, Any]]:
    """The request log of one sandbox service (its endpoint URL; see `provision.sandbox_server`)."""
    with urllib.request.urlopen(f"{endpoint_url}/_sandbox/requests", timeout=10,
                                context=_context(endpoint_url)) as resp:
        return json.loads(resp.read())


def control(endpoint_url: str, path: str, payload: dict[str, Any] | None = None) -> None:
    """POST ``payload`` (JSON) to a sandbox service's control path (``requests/reset``, ``faults``, ``limits``; see
    `provision.sandbox_server`)."""
    data = json.dumps(payload or {}).encode()
    req = urllib.request.Request(f"{endpoint_url}/_sandbox/{path}", data=data, method="POST")
    urllib.request.urlopen(req, timeout=10, context=_context(endpoint_url)).read()
