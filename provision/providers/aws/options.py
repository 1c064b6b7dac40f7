"""The S3-specific fields of a profile and their validation: pure (no SDK import, no I/O)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from provision.errors import BadInput
from provision.models import Access
from provision.names import check_iam_name, check_region, parse_expiry, url_problem

USER_PREFIX = "provision-"
"""Default IAM user names start with this."""


class AwsFields(BaseModel):
    """The profile fields only ``provision s3`` takes (`provision.profiles.Profile` is composed of these and the
    other providers' fields).

    Attributes:
        iam_role: IAM-role mode: this role + an instance profile of the same name, no user, no key.
        user: IAM user name (default ``provision-<prefix or first bucket>-<access>``).
        region: AWS region (default: the SDK's configured region, else ``us-east-1``).
        endpoint_url: an S3-compatible endpoint (the sandbox, MinIO, Ceph RGW, Wasabi ...); None for AWS itself.
        issuer: who issues the credential: ``aws-iam`` (AWS's IAM API: AWS, Ceph RGW, Wasabi, the sandbox's moto) or
            ``minio`` (MinIO's admin API: a canned policy, a user and an access key); None: detected from the
            endpoint (`provision.providers.aws.minio.detect_issuer`).
        iam_endpoint_url: ``aws-iam`` only: where IAM is served when not on the S3 endpoint (Wasabi:
            ``https://iam.wasabisys.com``).
        key_expiry: ``minio`` only: the access key's lifetime (``30d``, ``12h`` or an ISO-8601 UTC instant); None:
            it never expires.
    """

    model_config = ConfigDict(extra="forbid")

    iam_role: str | None = None
    user: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    issuer: Literal["aws-iam", "minio"] | None = None
    iam_endpoint_url: str | None = None
    key_expiry: str | None = None

    @field_validator("endpoint_url", "iam_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """Refuse a malformed endpoint URL (`provision.names.url_problem`) as a field error, so the profile
        loader names the flag or the profile line."""
        problem = None if value is None else url_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class AwsOptions(AwsFields):
    """The options only ``provision s3`` takes (`AwsFields`), with their cross-field rules and defaults."""

    @model_validator(mode="after")
    def _region(self) -> AwsOptions:
        """Refuse an impossible ``--region`` before any call (`provision.names.check_region`: AWS's own region
        codes without ``--endpoint-url``, any region name's shape with one)."""
        if self.region is not None:
            check_region(self.region, aws=self.endpoint_url is None)
        return self

    def identity(self, buckets: list[str], prefix: str | None, access: Access) -> tuple[Literal["role", "user"], str]:
        """The IAM identity the grant is given to.

        Args:
            buckets: the (checked) bucket names; the first names the default user when there is no prefix.
            prefix: the profile's prefix, or None.
            access: the grant's access level (the default user name ends with it).

        Returns:
            ``("role", iam_role)``, or ``("user", name)``: ``user``, else ``provision-<prefix or first
            bucket>-<access>`` cut to fit IAM's 64-character limit.

        Raises:
            BadInput: both ``iam_role`` and ``user`` are set; the name is not a valid IAM name (see
                `provision.names.check_iam_name`); what `check_issuer` refuses.
        """
        self.check_issuer()
        if self.iam_role and self.user:
            raise BadInput("--iam-role and --user are mutually exclusive", "IAM-role mode has no user; drop --user")
        if self.iam_role:
            return "role", check_iam_name(self.iam_role, "--iam-role")
        name = self.user or f"{USER_PREFIX}{prefix or buckets[0]}"[:55] + f"-{access.value}"
        return "user", check_iam_name(name, "--user")

    def check_issuer(self) -> None:
        """Refuse options that do not apply to the chosen ``issuer`` (an undetected one allows both sets).

        MinIO has no IAM roles and serves its admin API on the S3 endpoint; IAM access keys carry no expiry
        (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html), MinIO's do
        (https://min.io/docs/minio/linux/administration/identity-access-management/minio-user-management.html).

        Raises:
            BadInput: ``--iam-role`` or ``--iam-endpoint-url`` with ``minio``; ``--key-expiry`` with ``aws-iam``;
                a ``--key-expiry`` that is not ``Nd``, ``Nh`` or an instant with a zone (whether it is still in the
                future is checked when a key is issued: `expiry`).
        """
        if self.issuer == "minio" and self.iam_role:
            raise BadInput("--iam-role does not apply to --issuer minio (MinIO has no IAM roles)",
                           "drop --iam-role: MinIO gets a user and an access key")
        if self.issuer == "minio" and self.iam_endpoint_url:
            raise BadInput("--iam-endpoint-url does not apply to --issuer minio (its admin API is on the S3 "
                           "endpoint)", "drop --iam-endpoint-url")
        if self.key_expiry is not None:
            if self.issuer == "aws-iam" or self.iam_role:
                raise BadInput("--key-expiry applies to --issuer minio only (IAM access keys do not expire)",
                               "drop --key-expiry, or rotate IAM keys with --rotate")
            self.expiry(datetime(1970, 1, 1, tzinfo=timezone.utc))  # the form only: an instant may pass later

    def expiry(self, now: datetime) -> datetime | None:
        """The access key's expiry for a key issued at ``now`` (aware UTC), or None when it never expires.

        Raises:
            BadInput: see `provision.names.parse_expiry`.
        """
        return None if self.key_expiry is None else parse_expiry(self.key_expiry, now, "--key-expiry")
