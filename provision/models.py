"""The shared vocabulary: access levels, credentials, the Grant every output is rendered from, and resources.

Every model is a pydantic model so that the state file is validated when it is read back.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class Access(str, Enum):
    """What a grant allows on its buckets: ``readonly`` (list + read) or ``full`` (read/write/delete/multipart)."""

    readonly = "readonly"
    full = "full"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyPair(_Model):
    """An access key: AWS IAM user key; Azure account name + account key; GCS HMAC key."""

    kind: Literal["key_pair"] = "key_pair"
    access_key: str
    secret_key: str


class SasToken(_Model):
    """An Azure SAS token with its expiry (UTC)."""

    kind: Literal["sas"] = "sas"
    account_name: str
    token: str
    expires_at: datetime


class Role(_Model):
    """AWS IAM-role mode: the platform runs on an instance whose instance profile carries this role; no keys."""

    kind: Literal["role"] = "role"
    role_name: str


class KeyFile(_Model):
    """A GCS service-account JSON key file on disk (absolute path, mode 0600)."""

    kind: Literal["key_file"] = "key_file"
    path: str


class Ambient(_Model):
    """No secret at all: Azure RBAC on a managed identity, or the VM's attached GCS service account."""

    kind: Literal["ambient"] = "ambient"


Auth = Annotated[KeyPair | SasToken | Role | KeyFile | Ambient, Field(discriminator="kind")]

SECRET_FIELDS = ("secret_key", "token")
"""Fields of an Auth that hold secrets; masked in every output unless ``--show-secrets``."""


class Grant(_Model):
    """The one record every rendered file is made from.

    Attributes:
        provider: ``s3`` | ``azure`` | ``gcs``.
        storage_provider: the value Supervisely's ``STORAGE_PROVIDER`` takes for this grant
            (``minio`` for S3 and S3-compatible endpoints, ``azure``, ``google``).
        access: readonly or full.
        buckets: bucket (Azure: container) names, in the order given.
        endpoint: host (or URL on Azure) as the target platform wants it, e.g. ``s3.amazonaws.com``.
        endpoint_url: the full URL `provision` itself talks to, or None for the cloud's default.
        port: TCP port for the platform (443 on AWS), or None.
        secure: whether the platform must use TLS towards ``endpoint``.
        region: the bucket region, or None where it does not apply.
        auth: exactly one credential kind.
    """

    provider: Literal["s3", "azure", "gcs"]
    storage_provider: Literal["minio", "azure", "google"]
    access: Access
    buckets: list[str]
    endpoint: str
    endpoint_url: str | None = None
    port: int | None = None
    secure: bool = True
    region: str | None = None
    auth: Auth


class Resource(_Model):
    """A cloud resource `provision` created or adopted, recorded in state as soon as it exists.

    Attributes:
        kind: e.g. ``bucket``, ``iam_user``, ``user_policy``, ``access_key``, ``iam_role``, ``role_policy``,
            ``instance_profile``, ``access_key_intent``.
        name: the resource's name or id (an access key id, never a secret).
        created: True when `provision` created it (``destroy`` may delete it); False when adopted.
        parent: the owning resource's name (the user of a key or policy), if any.
        since: UTC time an intent was recorded (e.g. ``access_key_intent``: keys of its user created at or after
            it and unknown to the state come from an interrupted run); None for other records, and then not
            written to the state file (files from before the field read back unchanged).
    """

    kind: str
    name: str
    created: bool
    parent: str | None = None
    since: datetime | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_since(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("since") is None:
            data.pop("since", None)
        return data


class Change(_Model):
    """One line of a plan or of an apply report.

    Attributes:
        action: ``create`` | ``adopt`` | ``update`` | ``no change`` | ``issue`` (a new secret) | ``delete``.
        kind: resource kind, as in `Resource`.
        name: resource name.
        detail: what exactly changes, human-readable, never a secret.
    """

    action: Literal["create", "adopt", "update", "no change", "issue", "delete"]
    kind: str
    name: str
    detail: str = ""

    @property
    def mutating(self) -> bool:
        """True when applying this change calls a mutating cloud API."""
        return self.action in ("create", "update", "issue", "delete")
