"""The one seam for boto3 clients (and MinIO's admin client): session (admin credentials), endpoint URL, region,
the sandbox's admin key, botocore's configuration (retries, timeouts, connection pool), and the SDK's error types.

Every S3, IAM and STS client `provision` makes comes from `AwsSdk.client` (or `AwsSdk.data_client` for the
data commands), every ``minio.MinioAdmin`` from `AwsSdk.minio_admin`, so there is one place to point at an
endpoint and one place for tests to reach.
"""

from __future__ import annotations

import os
from typing import Any

from provision.models import KeyPair
from provision.providers.aws.options import AwsOptions
from provision.providers.base import sdk_attempts

"""Environment variable: total attempts per SDK request, the first included (unset: ``standard`` mode with 3
retries, i.e. 4 attempts)."""
DEFAULT_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 3}
"""botocore's retry configuration when `SDK_ATTEMPTS_ENV` is unset (``max_attempts`` counts retries only)."""


def error_code(exc: BaseException) -> str:
    """S3's or IAM's error code of a botocore ``ClientError`` (``NoSuchBucket``, ``AccessDenied``, ``404`` ...);
    ``""`` for any other exception."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def answered_errors() -> tuple[type[BaseException], ...]:
    """botocore's "the service answered with an error" type (``ClientError``): a create refused this way did not
    happen (`provision.ledger.Plan.create` forgets its record)."""
    from botocore.exceptions import ClientError

    return (ClientError,)


def sdk_errors() -> tuple[type[BaseException], ...]:
    """Every botocore error a request can end with: ``ClientError`` (the service's answer) and ``BotoCoreError``
    (no answer, bad parameters, missing credentials ...)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """botocore's "no answer at all" errors: its ``ConnectionError`` (``EndpointConnectionError``: refused or
    DNS failure; ``ConnectTimeoutError``, ``ProxyConnectionError``, ``SSLError``) and ``HTTPClientError``
    (``ReadTimeoutError``, ``ConnectionClosedError``)."""
    from botocore.exceptions import ConnectionError as SdkConnectionError
    from botocore.exceptions import HTTPClientError

    return (SdkConnectionError, HTTPClientError)


def retries() -> dict[str, Any]:
    """botocore's ``retries`` configuration: `DEFAULT_RETRIES`, or ``total_max_attempts`` from
    `SDK_ATTEMPTS_ENV` (``standard`` mode: exponential back-off on throttling, 5xx and connection errors; see
    https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).

    Raises:
        BadInput: the variable is set but is not a whole number ≥ 1.
    """
    attempts = sdk_attempts()
    if attempts is None:
        return dict(DEFAULT_RETRIES)
    return {"mode": "standard", "total_max_attempts": attempts}


def _raw_timestamp(value: str) -> str:
    """Timestamp "parser" of the data clients: keep the text (see `AwsSdk.data_client`)."""
    return value


class AwsSdk:
    """Makes every boto3 client of one provider object; no I/O until a client is asked for.

    Args:
        options: the S3 options of the profile (endpoint, region).
        sandbox: take the endpoint, region and admin key from the running ``provision sandbox``.
    """

    def __init__(self, options: AwsOptions, sandbox: bool) -> None:
        self.options = options
        self.use_sandbox = sandbox
        self._session: Any = None
        self._sandbox: Any = None
        self._admin: dict[str, Any] = {}
        self._data: dict[str | None, Any] = {}

    def endpoint_url(self) -> str | None:
        """The S3/IAM endpoint: the profile's, the sandbox's (its ``minio`` service with ``--issuer minio``, else
        its S3 + IAM server), ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, or None for AWS itself.

        Raises:
            BadInput: ``--env sandbox`` and the sandbox is not running (or has no MinIO endpoint).
        """
        if self.options.endpoint_url:
            return self.options.endpoint_url
        if self.use_sandbox:
            return str(self._sandbox_minio().endpoint_url if self.options.issuer == "minio"
                       else self.sandbox().s3.endpoint_url)
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None

    def iam_endpoint_url(self) -> str | None:
        """Where IAM (and STS) requests go: ``--iam-endpoint-url`` (Wasabi serves IAM on its own host), else the
        S3 endpoint (`endpoint_url`)."""
        return self.options.iam_endpoint_url or self.endpoint_url()

    def _sandbox_minio(self) -> Any:
        """The sandbox's MinIO endpoint (`provision.sandbox.MinioEndpoint`). Raises BadInput when it has none."""
        from provision.errors import BadInput

        minio = self.sandbox().minio
        if minio is None:
            raise BadInput("the running sandbox has no MinIO endpoint", "restart it: `provision sandbox down` then "
                           "`provision sandbox up`")
        return minio

    def sandbox(self) -> Any:
        """The running sandbox's info (`provision.sandbox.SandboxInfo`). Raises BadInput when it is not running."""
        if self._sandbox is None:
            from provision.sandbox import require_info

            self._sandbox = require_info()
        return self._sandbox

    def region(self) -> str:
        """The profile's region, the sandbox's, the SDK's configured one, or ``us-east-1``."""
        if self.options.region:
            return self.options.region
        if self.use_sandbox:
            return str(self.sandbox().s3.region)
        return str(self.session().region_name or "us-east-1")

    def session(self) -> Any:
        """The boto3 session: the SDK's own credential chain, or the sandbox's admin key."""
        if self._session is None:
            import boto3

            kwargs: dict[str, Any] = {"region_name": self.options.region}
            if self.use_sandbox:
                info = self.sandbox().s3
                root = self._sandbox_minio() if self.options.issuer == "minio" else info
                kwargs.update(aws_access_key_id=root.access_key, aws_secret_access_key=root.secret_key,
                              region_name=self.options.region or info.region)
            self._session = boto3.Session(**kwargs)
        return self._session

    def config(self) -> Any:
        """botocore's ``Config``: `retries`, 10 s connect / 60 s read timeouts, up to 64 pooled connections,
        path-style addressing on a custom endpoint.

        Raises:
            BadInput: see `retries`.
        """
        from botocore.config import Config

        return Config(
            retries=retries(),
            s3={"addressing_style": "path"} if self.endpoint_url() else {},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=64,  # manifest/migrate run up to 64 concurrent requests through one client
        )

    def client(self, service: str, key: KeyPair | None = None) -> Any:
        """A boto3 client for ``service`` (``s3``, ``iam``, ``sts``): with ``key`` when given, else the admin
        credentials (one admin client per service, shared: boto3 clients are thread-safe).

        Raises:
            BadInput: see `config`; the sandbox is not running.
        """
        if key is not None:
            return self._make(service, key)
        if service not in self._admin:
            self._admin[service] = self._make(service, None)
        return self._admin[service]

    def data_client(self, key: KeyPair | None) -> Any:
        """The S3 client of the data commands for ``key`` (None: the admin credentials), one per credential.

        It parses no timestamps: the data commands never read one (``LastModified`` stays the text S3 sent), and
        parsing them was a third of a listing's cost. Other clients are untouched.
        """
        cache_key = key.access_key if key is not None else None
        if cache_key not in self._data:
            from botocore.parsers import ResponseParserFactory

            core = self.session()._session  # the botocore session behind boto3's (boto3's documented attribute)
            default = core.get_component("response_parser_factory")
            fast = ResponseParserFactory()
            fast.set_parser_defaults(timestamp_parser=_raw_timestamp)
            core.register_component("response_parser_factory", fast)  # read once, when the client is created
            try:
                self._data[cache_key] = self._make("s3", key)
            finally:
                core.register_component("response_parser_factory", default)
        return self._data[cache_key]

    def _make(self, service: str, key: KeyPair | None) -> Any:
        creds: dict[str, Any] = {}
        if key is not None:
            creds = {"aws_access_key_id": key.access_key, "aws_secret_access_key": key.secret_key,
                     "aws_session_token": None}
        endpoint = self.endpoint_url() if service == "s3" else self.iam_endpoint_url()
        return self.session().client(service, endpoint_url=endpoint, region_name=self.region(),
                                     config=self.config(), **creds)

    def admin_key(self) -> tuple[str, str, str | None]:
        """The admin credential of the session (the sandbox's root, or the AWS credential chain's):
        ``(access_key, secret_key, session_token or None)``.

        Raises:
            botocore.exceptions.NoCredentialsError: the chain found none.
        """
        from botocore.exceptions import NoCredentialsError

        found = self.session().get_credentials()
        if found is None:
            raise NoCredentialsError()
        frozen = found.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def minio_admin(self, key: KeyPair | None = None) -> Any:
        """A ``minio.MinioAdmin`` (MinIO's admin API, https://min.io/docs/minio/linux/reference/minio-mc-admin.html)
        on the S3 endpoint, signing with ``key`` (a MinIO user's own key) or, when None, the admin credential
        (`admin_key`). Requests time out after 10 s (connect) / 60 s (read); 5xx answers are retried as
        `provision.providers.base.sdk_attempts` says (default 4 attempts), and the last answer is returned as the
        server's error rather than raised as a retry error.

        Raises:
            BadInput: no endpoint (AWS itself has no MinIO admin API).
            botocore.exceptions.NoCredentialsError: no admin credential.
        """
        from urllib.parse import urlparse

        import certifi
        import urllib3
        from minio import MinioAdmin
        from minio.credentials import StaticProvider

        from provision.errors import BadInput

        endpoint = self.endpoint_url()
        if not endpoint:
            raise BadInput("--issuer minio needs the MinIO endpoint", "pass --endpoint-url https://minio.example:9000")
        url = urlparse(endpoint)
        access_key, secret_key, token = (key.access_key, key.secret_key, None) if key else self.admin_key()
        attempts = sdk_attempts() or 4
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=60), maxsize=10,
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=attempts - 1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504],
                                  raise_on_status=False))
        return MinioAdmin(endpoint=url.netloc, credentials=StaticProvider(access_key, secret_key, token),
                          region=self.region() if self.options.region else "", secure=url.scheme == "https",
                          http_client=http)
