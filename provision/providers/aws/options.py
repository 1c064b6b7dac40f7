"""The S3-specific fields of a profile and their validation: pure (no SDK import, no I/O)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from provision.errors import BadInput
from provision.models import Access
from provision.names import check_iam_name

USER_PREFIX = "provision-"
"""Default IAM user names start with this."""


class AwsOptions(BaseModel):
    """The options only ``provision s3`` takes.

    Attributes:
        iam_role: IAM-role mode: this role + an instance profile of the same name, no user, no key.
        user: IAM user name (default ``provision-<prefix or first bucket>-<access>``).
        region: AWS region (default: the SDK's configured region, else ``us-east-1``).
        endpoint_url: an S3-compatible endpoint with an IAM API (the sandbox, ...); None for AWS itself.
    """

    model_config = ConfigDict(extra="forbid")

    iam_role: str | None = None
    user: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

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
                `provision.names.check_iam_name`).
        """
        if self.iam_role and self.user:
            raise BadInput("--iam-role and --user are mutually exclusive", "IAM-role mode has no user; drop --user")
        if self.iam_role:
            return "role", check_iam_name(self.iam_role, "--iam-role")
        name = self.user or f"{USER_PREFIX}{prefix or buckets[0]}"[:55] + f"-{access.value}"
        return "user", check_iam_name(name, "--user")
