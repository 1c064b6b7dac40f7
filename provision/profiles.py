"""Profiles: ``envs/<env>.yaml`` supplies defaults for a command's options, validated with pydantic before any
cloud call; flags given on the command line win."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError

from provision.errors import BadInput, a_or_an
from provision.models import Access
from provision.names import check_env_name
from provision.providers.aws.options import AwsFields
from provision.providers.azure.options import AzureFields
from provision.providers.gcp.options import GcsFields
from provision.resources import packaged


class Profile(AwsFields, AzureFields, GcsFields):
    """The validated inputs of one provisioning run: the fields every provider takes (below) and each provider's
    own (`provision.providers.aws.options.AwsFields`, `provision.providers.azure.options.AzureFields`,
    `provision.providers.gcp.options.GcsFields`; a field two providers share, such as ``location``, means the
    same to both).

    Attributes:
        provider: ``s3`` | ``azure`` | ``gcs``; a profile for another provider is refused by the wrong command.
        buckets: explicit bucket names; empty means "use ``prefix``".
        prefix: Supervisely prefix: buckets ``<prefix>-public`` and ``<prefix>-private``.
        access: readonly (default) or full.
        sandbox: take endpoints and admin credentials from the running ``provision sandbox``.
        adopt: take over resources another provision state marked as its own (``--adopt``).
    """

    model_config = ConfigDict(extra="forbid")

    provider: Literal["s3", "azure", "gcs"] | None = None
    buckets: list[str] = []
    prefix: str | None = None
    access: Access = Access.readonly
    sandbox: bool = False
    adopt: bool = False


PROVIDER_FIELDS: dict[str, set[str]] = {
    "s3": set(AwsFields.model_fields),
    "azure": set(AzureFields.model_fields),
    "gcs": set(GcsFields.model_fields),
}
"""The provider-specific fields each provider accepts; the rest (provider, buckets, prefix, access, sandbox) are
common (as is ``adopt``). A profile that sets another provider's field is refused rather than silently ignored."""


def options_of(provider: str) -> list[str]:
    """The profile fields ``provider`` (``s3`` | ``azure`` | ``gcs``) accepts: the common ones, then its own."""
    common = [f for f in Profile.model_fields if not any(f in fields for fields in PROVIDER_FIELDS.values())]
    return common + [f for f in Profile.model_fields if f in PROVIDER_FIELDS.get(provider, set())]


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
            raise BadInput(f"unknown option {name} in {where}", f"remove it; the options of `provision "
                           f"{provider}` are: {', '.join(options_of(provider))}") from None
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
