"""Pure name rules per provider. Each check raises `BadInput` naming the rule broken and how to fix it."""

from __future__ import annotations

import ipaddress
import re

from provision.errors import BadInput

_S3_CHARS = re.compile(r"^[a-z0-9.-]+$")
_S3_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_S3_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_IAM_NAME = re.compile(r"^[\w+=,.@-]+$", re.ASCII)
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def check_s3_bucket(name: str) -> str:
    """Check a general-purpose S3 bucket name.

    Rules: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html — 3–63 characters;
    lowercase letters, digits, ``.`` and ``-``; begins and ends with a letter or digit; no ``..``; not an IP
    address; no reserved prefix (``xn--``, ``sthree-``, ``amzn-s3-demo-``) or suffix (``-s3alias``, ``--ol-s3``,
    ``.mrap``, ``--x-s3``, ``--table-s3``).

    Args:
        name: the bucket name.

    Returns:
        The name, unchanged.

    Raises:
        BadInput: the name breaks a rule; the message names the rule.
    """
    why = None
    if not 3 <= len(name) <= 63:
        why = f"is {len(name)} characters long; S3 bucket names are 3–63 characters"
    elif not _S3_CHARS.match(name):
        why = "may contain only lowercase letters, digits, '.' and '-'"
    elif not (name[0].isalnum() and name[-1].isalnum()):
        why = "must begin and end with a lowercase letter or a digit"
    elif ".." in name:
        why = "must not contain two adjacent periods"
    elif _is_ip(name):
        why = "must not be formatted as an IP address"
    elif name.startswith(_S3_BAD_PREFIXES):
        why = f"must not start with {', '.join(_S3_BAD_PREFIXES)} (reserved by AWS)"
    elif name.endswith(_S3_BAD_SUFFIXES):
        why = f"must not end with {', '.join(_S3_BAD_SUFFIXES)} (reserved by AWS)"
    if why:
        raise BadInput(f"invalid bucket name {name!r}: it {why}", "choose a valid name (AWS bucket naming rules)")
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_iam_name(name: str, what: str, max_len: int = 64) -> str:
    """Check an IAM user, role, policy or instance-profile name.

    Rules: https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html — 1–64 characters
    (instance profiles and policies: 128) from ``[A-Za-z0-9_+=,.@-]``.

    Args:
        name: the name to check.
        what: what it names, for the message (``--user``, ``--iam-role``).
        max_len: the length limit for this kind of name.

    Returns:
        The name, unchanged.

    Raises:
        BadInput: the name breaks a rule.
    """
    if not 1 <= len(name) <= max_len:
        raise BadInput(f"invalid {what} {name!r}: IAM names are 1–{max_len} characters", f"shorten {what}")
    if not _IAM_NAME.match(name):
        raise BadInput(
            f"invalid {what} {name!r}: IAM names may contain only letters, digits and _+=,.@-",
            f"choose another {what}",
        )
    return name


def check_env_name(name: str) -> str:
    """Check an environment name (it becomes the file name ``.provision/<env>.json``).

    Rule (ours): 1–64 characters from ``[A-Za-z0-9_.-]``, starting with a letter or digit, so it can never
    escape the state directory.

    Raises:
        BadInput: the name breaks the rule.
    """
    if not _ENV_NAME.match(name):
        raise BadInput(
            f"invalid --env {name!r}: use 1–64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            "pick a plain name such as 'prod' or 'sandbox'",
        )
    return name


def check_prefix(prefix: str) -> str:
    """Check a ``--prefix`` (it names the Supervisely pair ``<prefix>-public`` and ``<prefix>-private``).

    Raises:
        BadInput: the prefix has characters no bucket name may hold.
    """
    if not _PREFIX.match(prefix):
        raise BadInput(
            f"invalid --prefix {prefix!r}: it may contain only lowercase letters, digits, '.' and '-', "
            "starting with a letter or digit",
            "choose a prefix such as 'acme'",
        )
    return prefix


def supervisely_pair(prefix: str) -> list[str]:
    """The two buckets Supervisely uses for ``prefix``: ``[<prefix>-public, <prefix>-private]``.

    Source: shared/REFERENCE.md §1 (``DATA_PATH/storage/<prefix>-public`` and ``-private``).
    """
    check_prefix(prefix)
    return [f"{prefix}-public", f"{prefix}-private"]
