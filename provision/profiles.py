"""Profiles: ``envs/<env>.yaml`` supplies defaults for a command's options, validated with pydantic before any
cloud call; flags given on the command line win."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from provision.errors import BadInput, a_or_an
from provision.models import Access
from provision.names import check_env_name, url_problem
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
        issuer: S3: who issues the credential, ``aws-iam`` (IAM's API) or ``minio`` (MinIO's admin API); None:
            detected from the endpoint.
        iam_endpoint_url: S3 ``aws-iam``: the IAM endpoint when it is not the S3 endpoint (Wasabi).
        key_expiry: S3 ``minio``: the access key's lifetime (``30d``, ``12h`` or an ISO-8601 UTC instant).
        sandbox: take endpoints and admin credentials from the running ``provision sandbox``.
        account: Azure storage account name.
        resource_group: Azure resource group (default ``provision-<account>``).
        location: Azure location (default ``westeurope``) or GCS bucket location (default ``US``).
        subscription: Azure subscription id (default ``AZURE_SUBSCRIPTION_ID``, else the only one listed).
        connection_string: Azure data-plane-only mode: an existing account's connection string, no management call.
        sas_expiry: Azure SAS lifetime: ``Nd``, ``Nh`` or an ISO-8601 UTC instant (default ``30d``).
        renew_before: Azure: renew the stored SAS when less than this remains (``Nd``/``Nh``, default ``7d``).
        account_key: Azure: hand out the account name + key1 instead of a SAS (full access).
        keyless: no secret at all: Azure RBAC for ``principal_id``; GCS: the VM's attached service account.
        principal_id: Azure ``--keyless``: the managed identity's principal (object) id.
        harden: change an adopted bucket's / account's insecure settings instead of only reporting them.
        project: GCP project id.
        service_account: GCS service-account id (default ``provision-<prefix or first bucket>-<access>``).
        hmac: GCS: an HMAC key for the S3-interoperable endpoint instead of a JSON key file.
        adopt: take over resources another provision state marked as its own (``--adopt``).
        shared_account: Azure: accept that the account SAS also reaches containers outside the grant.
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
    issuer: Literal["aws-iam", "minio"] | None = None
    iam_endpoint_url: str | None = None
    key_expiry: str | None = None
    sandbox: bool = False
    account: str | None = None
    resource_group: str | None = None
    location: str | None = None
    subscription: str | None = None
    connection_string: str | None = None
    sas_expiry: str | None = None
    renew_before: str | None = None
    account_key: bool = False
    keyless: bool = False
    principal_id: str | None = None
    harden: bool = False
    project: str | None = None
    service_account: str | None = None
    hmac: bool = False
    adopt: bool = False
    shared_account: bool = False

    @field_validator("endpoint_url", "iam_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        problem = None if value is None else url_problem(value)
        if problem:
            raise ValueError(problem)
        return value


PROVIDER_FIELDS: dict[str, set[str]] = {
    "s3": {"iam_role", "user", "region", "endpoint_url", "issuer", "iam_endpoint_url", "key_expiry"},
    "azure": {"account", "resource_group", "location", "subscription", "connection_string", "sas_expiry",
              "renew_before", "account_key", "keyless", "principal_id", "harden", "shared_account"},
    "gcs": {"location", "project", "service_account", "hmac", "keyless", "harden"},
}
"""The provider-specific fields each provider accepts; the rest (provider, buckets, prefix, access, sandbox) are
common (as is ``adopt``). A profile that sets another provider's field is refused rather than silently ignored."""


SECRET_OPTIONS = frozenset({"connection_string"})
"""Options whose value is a secret: never echoed in a message."""
OPTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
"""What an option name looks like; an unknown key of another shape is not echoed (it may be a pasted secret)."""
FLAGS = {"buckets": "BUCKET", "principal_id": "--keyless"}
"""Profile fields whose command-line spelling is not ``--<field-with-dashes>``."""


def flag_of(field: str) -> str:
    """The command-line spelling of the profile field ``field``: ``--endpoint-url``, ``BUCKET``, ``--keyless``."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _is_empty(value: Any) -> bool:
    """An empty or blank string, or a list holding one."""
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, str) and not item.strip() for item in items)


def read_profile(path: Path) -> dict[str, Any]:
    """The options of the profile file ``path``: a YAML mapping, read bounded (`provision.yamlsafe`): UTF-8, no
    duplicate key, no alias bomb.

    Raises:
        BadInput: unreadable (a directory...), not UTF-8, not YAML, a duplicate key, an alias bomb, not a mapping;
            the message names the file and the line, never the content (a profile may hold a secret).
    """
    from ruamel.yaml import YAML

    from provision.yamlsafe import decode, load_mapping

    fix = "fix the file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read profile {path}: {exc.strerror or type(exc).__name__}", fix) from None
    loaded = load_mapping(path, decode(path, data, fix), YAML(typ="safe", pure=True), fix)
    return dict(loaded or {})


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
        data.update(read_profile(path))
    given = {k: v for k, v in overrides.items() if v is not None and v != [] and v != ()}
    data.update(given)
    where = str(path) if path else "the command line"
    empty = next((k for k, v in data.items() if _is_empty(v)), None)
    if empty is not None:
        if empty in given:
            raise BadInput(f"{flag_of(empty)} is empty", "give it a value, or leave it out")
        raise BadInput(f"option {empty!r} in {where} is empty", "give it a value, or remove the line")
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        if key in given:
            shown = "" if key in SECRET_OPTIONS else f" {given[key]!r}"
            raise BadInput(f"invalid option {key!r} ({flag_of(key)}{shown}): {err['msg']}", "fix the value") from None
        if err["type"] == "extra_forbidden":
            name = repr(key) if OPTION_NAME.match(key) else "(a key that is no option name)"
            raise BadInput(f"unknown option {name} in {where}", f"remove it; the options are: "
                           f"{', '.join(Profile.model_fields)}") from None
        loc = ".".join(str(p) for p in err["loc"]) or "profile"
        raise BadInput(f"invalid option {loc!r} in {where}: {err['msg']}", "fix the value or remove it") from None
    if profile.provider is not None and profile.provider != provider:
        raise BadInput(
            f"environment {env!r} is {a_or_an(profile.provider)} profile ({where})",
            f"run `provision {profile.provider}` for it, or pick another --env",
        )
    foreign = sorted(k for k in set().union(*PROVIDER_FIELDS.values()) - PROVIDER_FIELDS[provider]
                     if k in profile.model_fields_set and data.get(k) not in (None, False))
    if foreign:
        raise BadInput(f"option {foreign[0]!r} ({where}) does not apply to `provision {provider}`",
                       "remove it, or use the command of the provider it belongs to")
    profile.provider = provider  # type: ignore[assignment]
    return profile
