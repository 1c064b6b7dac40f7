"""The one seam to Google's SDKs: clients, endpoints, admin credentials, retry budgets, and the SDK's error types.

Two clients, one per API, both made here and nowhere else:

- `GcsClients.storage` (google-cloud-storage): buckets, bucket IAM, HMAC keys, objects. Endpoint: the sandbox's
  emulator, else ``STORAGE_EMULATOR_HOST``, else Google's. Retries are the SDK's own (`storage_retry`), with a
  `RETRY_SECONDS` budget instead of its default 120 s (a CLI should not hang for two minutes).
- `GcsClients.iam` (google-cloud-iam ``IAMClient``): service accounts and their keys. Endpoint: Google's, or
  ``PROVISION_GCP_IAM_ENDPOINT`` (Private Service Connect, a local fake). google-cloud-iam 2.27 generates only the
  gRPC transport for ``iam_admin_v1`` (there is no ``transport="rest"``), so the client speaks gRPC; an endpoint on
  the loopback interface is reached with gRPC's local (plaintext, loopback-only) channel credentials.

Admin credentials come from Application Default Credentials (``google.auth.default``) outside the sandbox, and are
anonymous in the sandbox, whose emulator has no IAM at all, and with ``STORAGE_EMULATOR_HOST`` set (any GCS emulator;
anonymous as google-cloud-storage itself is there: https://cloud.google.com/python/docs/reference/storage/latest/
google.cloud.storage.client.Client). Either way there is no IAM API: `GcsClients.emulated`.

``PROVISION_SDK_ATTEMPTS`` (environment): when set, every retried request is tried at most that many times in all
(the first try included), within the same time budget; unset, only the time budget bounds the retries.

The SDKs are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from typing import Any
from urllib.parse import urlparse

from provision.errors import BadInput, CloudRefused, one_line
from provision.providers.base import sdk_attempts

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
"""Environment variable naming a Cloud Storage emulator (``host:port`` or a URL), as google-cloud-storage reads it."""
EMULATOR_PROJECT = "emulator"
"""The project id used with `EMULATOR_ENV` when no ``--project`` is given (an emulator takes any)."""
IAM_ENDPOINT_ENV = "PROVISION_GCP_IAM_ENDPOINT"
"""Environment variable naming the IAM admin endpoint (``host:port``); default ``iam.googleapis.com``."""
"""Environment variable capping the attempts (first try included) of every retried request; unset: no cap."""
CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""The OAuth scope of the admin credentials and of a grant's key file."""
RETRY_SECONDS = 15.0
"""Total seconds the SDK may spend retrying one transient failure (429, 5xx, connection reset)."""
TIMEOUT = (10.0, 60.0)
"""(connect, read) timeouts in seconds for each Cloud Storage request."""
IAM_TIMEOUT = 30.0
"""Seconds allowed for each IAM admin call."""


# ---- errors ----------------------------------------------------------------------------------------------------
def refused_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "Google answered with an error" (API errors, including a retry budget spent on
    5xx answers; auth errors; other HTTP client errors)."""
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return (GoogleAPIError, GoogleAuthError, requests.RequestException)


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "no answer at all": connection refused, DNS, timeouts (of Cloud Storage's HTTP
    client, or of google-auth fetching a token)."""
    import requests
    from google.auth.exceptions import TransportError

    return (requests.ConnectionError, requests.Timeout, TransportError)


def cloud_errors() -> tuple[type[BaseException], ...]:
    """`refused_errors` and `unreachable_errors` together: whatever leaves the SDK when a request fails."""
    return refused_errors() + unreachable_errors()


def describe(exc: BaseException) -> str:
    """One line (at most 300 characters) for an SDK error, never a traceback or a secret: an API error keeps its
    HTTP / gRPC status code in front (``403 POST https://...: <message>``), a spent retry budget names the last
    error it retried."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError

    if isinstance(exc, GoogleAPICallError) and exc.code is not None:
        return f"{exc.code} {one_line(exc)}"[:300]
    if isinstance(exc, RetryError) and exc.cause is not None:
        return f"{one_line(exc)}, last exception: {describe(exc.cause)}"[:300]
    return one_line(exc)


def no_credentials() -> CloudRefused:
    """The error for "Application Default Credentials found nothing"."""
    return CloudRefused("no Google credentials found", "run `gcloud auth application-default login`, set "
                        "GOOGLE_APPLICATION_CREDENTIALS, or try --env sandbox")


# ---- retries ---------------------------------------------------------------------------------------------------
def _retry_class() -> type:
    """``google.api_core.retry.Retry`` that also stops after `sdk_attempts` tries of one call (each call the
    SDK wraps counts its own tries; the time budget still applies). Built once, on first use. Its instances take
    no ``on_error`` of their own (the cap counts through the per-call ``on_error``)."""
    from google.api_core.retry import Retry

    class AttemptsRetry(Retry):  # type: ignore[misc]
        def __call__(self, func: Any, on_error: Any = None) -> Any:
            attempts = sdk_attempts()
            if attempts is None:
                return super().__call__(func, on_error)
            wrap = super().__call__

            @functools.wraps(func)
            def limited(*args: Any, **kwargs: Any) -> Any:
                failures = 0

                def count(exc: Exception) -> None:  # called for each retryable failure, before the back-off
                    nonlocal failures
                    failures += 1
                    if failures >= attempts:
                        raise exc
                    if on_error is not None:
                        on_error(exc)

                return wrap(func, count)(*args, **kwargs)

            return limited

    return AttemptsRetry


def storage_retry() -> Any:
    """google-cloud-storage's own retry policy (429, 5xx, connection errors; its ``DEFAULT_RETRY`` predicate) with
    a `RETRY_SECONDS` budget, back-off 0.25 s doubling to 4 s, and the `sdk_attempts` cap."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return _retry_class()(predicate=DEFAULT_RETRY._predicate, initial=0.25, maximum=4.0, multiplier=2.0,
                          timeout=RETRY_SECONDS)


def iam_retry() -> Any:
    """Retry for idempotent IAM admin reads/deletes: UNAVAILABLE and DEADLINE_EXCEEDED (the generated client's
    own default predicate), `RETRY_SECONDS` budget, the `sdk_attempts` cap."""
    from google.api_core import exceptions
    from google.api_core.retry import if_exception_type

    return _retry_class()(initial=0.25, maximum=4.0, multiplier=2.0, timeout=RETRY_SECONDS,
                          predicate=if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded))


# ---- clients ---------------------------------------------------------------------------------------------------
def emulator_host() -> str | None:
    """``$STORAGE_EMULATOR_HOST`` as a URL (``http://`` added when it has no scheme), or None when unset/empty."""
    host = os.environ.get(EMULATOR_ENV)
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def iamless_emulator() -> bool:
    """True when ``STORAGE_EMULATOR_HOST`` names an emulator and no IAM endpoint (`IAM_ENDPOINT_ENV`) is given:
    Cloud Storage alone, anonymous, with no API for service accounts, bindings or keys."""
    return emulator_host() is not None and not os.environ.get(IAM_ENDPOINT_ENV)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class GcsClients:
    """Makes the SDK clients of one run (no I/O until a client or a credential is asked for).

    Args:
        sandbox: talk to the running ``provision sandbox`` (anonymous credentials, its emulator).
        project: the project id (``--project``); None in the sandbox means the sandbox's own.
    """

    def __init__(self, sandbox: bool, project: str | None) -> None:
        self.sandbox = sandbox
        self.emulator = None if sandbox else emulator_host()
        self._iamless = sandbox or iamless_emulator()
        self._project = project
        self._info: Any = None
        self._credentials: Any = None
        self._storage: Any = None
        self._iam: Any = None

    def sandbox_info(self) -> Any:
        """The running sandbox's Cloud Storage endpoint (`provision.sandbox.GcsEndpoint`).

        Raises:
            BadInput: the sandbox is not running or has no GCS emulator.
        """
        if self._info is None:
            from provision.sandbox import require_info

            self._info = require_info().require_gcs()
        return self._info

    @property
    def emulated(self) -> bool:
        """True for an emulator with no IAM API: the sandbox's, or ``STORAGE_EMULATOR_HOST`` without
        ``PROVISION_GCP_IAM_ENDPOINT`` (`iamless_emulator`). Anonymous credentials; service accounts, bindings and
        keys are skipped or refused with `provision.providers.gcp.options.SANDBOX_NOTE`."""
        return self._iamless

    @property
    def project(self) -> str:
        """The project id: ``--project``, else the sandbox's project, else `EMULATOR_PROJECT` for an emulator."""
        if self._project:
            return self._project
        if self.emulator is not None:
            return EMULATOR_PROJECT
        return str(self.sandbox_info().project)

    def storage_endpoint(self) -> str | None:
        """The Cloud Storage JSON API endpoint: the sandbox's emulator, ``STORAGE_EMULATOR_HOST`` (``http://``
        added when it has no scheme), or None for Google's."""
        if self.sandbox:
            return str(self.sandbox_info().endpoint_url)
        return self.emulator

    def credentials(self) -> Any:
        """The admin credentials: anonymous on an emulator (`emulated`), else Application Default Credentials
        (scope `CLOUD_SCOPE`).

        Raises:
            CloudRefused: no credentials found (`no_credentials`).
        """
        if self._credentials is None:
            if self.emulated:
                from google.auth.credentials import AnonymousCredentials

                self._credentials = AnonymousCredentials()
            else:
                import google.auth
                from google.auth.exceptions import DefaultCredentialsError

                try:
                    self._credentials, _ = google.auth.default(scopes=[CLOUD_SCOPE])
                except DefaultCredentialsError:
                    raise no_credentials() from None
        return self._credentials

    def storage(self, credentials: Any = None) -> Any:
        """A google-cloud-storage client on `storage_endpoint`: the admin's (made once), or a new one for
        ``credentials`` when given.

        Raises:
            CloudRefused: no admin credentials.
        """
        from google.cloud import storage

        if credentials is None and self._storage is not None:
            return self._storage
        endpoint = self.storage_endpoint()
        client = storage.Client(project=self.project, credentials=credentials or self.credentials(),
                                client_options={"api_endpoint": endpoint} if endpoint else None)
        if credentials is None:
            self._storage = client
        return client

    def iam(self) -> Any:
        """The IAM admin client (service accounts, keys) on ``$PROVISION_GCP_IAM_ENDPOINT`` or Google's endpoint,
        made once.

        Raises:
            CloudRefused: no admin credentials.
        """
        if self._iam is None:
            self._iam = self._make_iam()
        return self._iam

    def _make_iam(self) -> Any:
        from google.cloud import iam_admin_v1

        endpoint = os.environ.get(IAM_ENDPOINT_ENV) or None
        if endpoint is None:
            return iam_admin_v1.IAMClient(credentials=self.credentials())
        host = endpoint.split("://", 1)[-1].rstrip("/")
        if _is_loopback(urlparse(f"//{host}").hostname or ""):
            import grpc
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

            transport = IAMGrpcTransport(
                host=host, credentials=self.credentials(), always_use_jwt_access=True,
                ssl_channel_credentials=grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP))
            return iam_admin_v1.IAMClient(transport=transport)
        return iam_admin_v1.IAMClient(credentials=self.credentials(), client_options={"api_endpoint": host})

    @staticmethod
    def key_credentials(path: str) -> Any:
        """Credentials from a grant's JSON key file (scope `CLOUD_SCOPE`).

        Raises:
            BadInput: the file is missing or is not a service-account key.
        """
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(path, scopes=[CLOUD_SCOPE])
        except (OSError, ValueError) as exc:
            raise BadInput(f"the key file {path} cannot be used ({type(exc).__name__}: {one_line(exc)})",
                           "re-run `provision gcs --rotate` for this environment to issue a new key") from None
