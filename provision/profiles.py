"""Profiles: ``envs/<env>.yaml`` supplies defaults for a command's options, validated with pydantic before any
cloud call; flags given on the command line win."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from provision.errors import BadInput
from provision.models import Access
from provision.names import check_env_name
from provision.resources import packaged


class Profile(BaseModel):
    """The validated inputs of one provisioning run.

    Attributes:
        provider: ``s3`` | ``azure`` | ``gcs``; a profile for another provider is refused by the wrong command.
        buckets: explicit bucket names; empty means "use ``prefix``".
        prefix: Supervisely prefix: buckets ``<prefix>-public`` and ``<prefix>-private``.
        access: readonly (default) or full.
        iam_role: AWS IAM-role mode: this role + instance profile, no user, no key.
        user: AWS IAM user name (default ``provision-<prefix or first bucket>-<access>``).
        region: cloud region (AWS default: the SDK's configured region, else ``us-east-1``).
        endpoint_url: an S3-compatible endpoint (MinIO, the sandbox); None for AWS itself.
        sandbox: take endpoints and admin credentials from the running ``provision sandbox``.
    """

    model_config = ConfigDict(extra="forbid")

    provider: Literal["s3", "azure", "gcs"] | None = None
    buckets: list[str] = []
    prefix: str | None = None
    access: Access = Access.readonly
    iam_role: str | None = None
    user: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sandbox: bool = False

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


def envs_dir() -> Path:
    """Where profiles live: ``$PROVISION_ENVS_DIR`` or ``./envs``."""
    return Path(os.environ.get("PROVISION_ENVS_DIR") or "envs")


def profile_path(env: str) -> Path | None:
    """The profile file for ``env``: ``envs/<env>.yaml``; for ``sandbox`` the shipped copy when there is none
    locally (so ``--env sandbox`` works after ``pipx install``). None when there is no profile."""
    check_env_name(env)
    local = envs_dir() / f"{env}.yaml"
    if local.exists():
        return local
    if env == "sandbox":
        return packaged("envs") / "sandbox.yaml"
    return None


def load_profile(env: str, overrides: dict[str, Any], provider: str) -> Profile:
    """Build the Profile for one command: the env's profile file (if any), then the flags on top.

    Args:
        env: environment name.
        overrides: option values from the command line; None values mean "not given" and are ignored.
        provider: the command's provider (``s3`` ...); a profile for another provider is refused.

    Returns:
        The validated Profile.

    Raises:
        BadInput: the profile file is unreadable, not YAML, not a mapping, has an unknown or invalid field,
            or belongs to another provider; or a flag value is invalid.
    """
    data: dict[str, Any] = {}
    path = profile_path(env)
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            first = str(exc).replace("\n", " ")
            raise BadInput(f"profile {path} is not valid YAML ({first})", "fix the file") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise BadInput(f"profile {path} must be a mapping of option: value", "fix the file")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None and v != [] and v != ()})
    where = str(path) if path else "the command line"
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "profile"
        raise BadInput(f"invalid option {loc!r} in {where}: {err['msg']}", "fix the value or remove it") from None
    if profile.provider is not None and profile.provider != provider:
        raise BadInput(
            f"environment {env!r} is a {profile.provider} profile ({where})",
            f"run `provision {profile.provider}` for it, or pick another --env",
        )
    profile.provider = provider  # type: ignore[assignment]
    return profile
