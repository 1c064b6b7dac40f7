"""Pure name rules per provider. Each check raises `BadInput` naming the rule broken and how to fix it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

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


_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_S3_COMPATIBLE_REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_region(region: str, aws: bool) -> str:
    """Check an S3 ``--region`` before any call.

    Rules: AWS region codes are ``<area>-<place>-<n>`` in lowercase (``us-east-1``, ``eu-central-1``,
    ``us-gov-west-1``; https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html). An
    S3-compatible endpoint (MinIO, Ceph RGW...) takes any region name its operator chose (MinIO's
    ``MINIO_SITE_REGION``, Ceph's zonegroup), so there only the shape of a name is checked: 1–64 letters, digits,
    ``_``, ``.`` or ``-``.

    Args:
        region: the region name.
        aws: the region is AWS's own (no ``--endpoint-url``).

    Returns:
        The region, unchanged.

    Raises:
        BadInput: the name cannot be a region.
    """
    if aws and not _AWS_REGION.match(region):
        raise BadInput(f"invalid --region {region!r}: AWS region codes look like us-east-1 or eu-central-1",
                       "pass a region code (`aws ec2 describe-regions --query Regions[].RegionName`)")
    if not _S3_COMPATIBLE_REGION.match(region):
        raise BadInput(f"invalid --region {region!r}: a region name is 1–64 letters, digits, '_', '.' or '-'",
                       "pass the region the endpoint is configured with, e.g. us-east-1")
    return region


def url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable endpoint URL, or None when it is: ``http://`` or ``https://``, a host name or
    address with no space, and a port (when given) from 1 to 65535 (RFC 3986 syntax,
    https://www.rfc-editor.org/rfc/rfc3986#section-3.2)."""
    from urllib.parse import urlsplit

    if not value.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if not parts.hostname or any(c.isspace() for c in value):
        return "must name a host, with no space"
    if port is not None and not 1 <= port <= 65535:
        return "has a port that is not a number from 1 to 65535"
    return None


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

    Source: Supervisely's storage guide, "How we store files" (``DATA_PATH/storage/<prefix>-public`` and
    ``-private``; https://docs.supervisely.com/enterprise-edition/advanced-tuning/s3).
    """
    check_prefix(prefix)
    return [f"{prefix}-public", f"{prefix}-private"]


# ---- Azure ----------------------------------------------------------------------------------------------------
_AZ_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_AZ_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_AZ_RG = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def check_storage_account(name: str) -> str:
    """Check an Azure storage account name.

    Rules: https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
    (Microsoft.Storage/storageAccounts) — 3–24 characters, lowercase letters and digits only, globally unique.

    Returns:
        The name, unchanged.

    Raises:
        BadInput: the name breaks a rule.
    """
    if not _AZ_ACCOUNT.match(name):
        why = (f"is {len(name)} characters long; storage account names are 3–24 characters"
               if not 3 <= len(name) <= 24 else "may contain only lowercase letters and digits")
        raise BadInput(f"invalid storage account name {name!r}: it {why}",
                       "choose e.g. 'acmesupervisely' (Azure storage account naming rules)")
    return name


def check_container(name: str) -> str:
    """Check an Azure Blob container name.

    Rules: https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
    — 3–63 characters; lowercase letters, digits and ``-``; starts and ends with a letter or digit; no ``--``.

    Returns:
        The name, unchanged.

    Raises:
        BadInput: the name breaks a rule.
    """
    why = None
    if not 3 <= len(name) <= 63:
        why = f"is {len(name)} characters long; container names are 3–63 characters"
    elif not re.match(r"^[a-z0-9-]+$", name):
        why = "may contain only lowercase letters, digits and '-'"
    elif "--" in name:
        why = "must not contain two consecutive dashes"
    elif not _AZ_CONTAINER.match(name):
        why = "must begin and end with a lowercase letter or a digit"
    if why:
        raise BadInput(f"invalid container name {name!r}: it {why}", "choose a valid name (Azure container naming "
                       "rules)")
    return name


def check_resource_group(name: str) -> str:
    """Check an Azure resource group name.

    Rules: https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
    (Microsoft.Resources/resourcegroups) — 1–90 characters: letters, digits, ``_ - . ( )``, not ending in ``.``.

    Raises:
        BadInput: the name breaks a rule.
    """
    if not _AZ_RG.match(name):
        raise BadInput(f"invalid --resource-group {name!r}: use 1–90 letters, digits, '_', '-', '.', '(' or ')', "
                       "not ending in '.'", "choose e.g. 'supervisely'")
    return name


def check_principal_id(value: str) -> str:
    """Check an Entra ID principal (object) id: a GUID.

    Raises:
        BadInput: not a GUID.
    """
    if not _UUID.match(value):
        raise BadInput(f"invalid --keyless principal id {value!r}: it must be the managed identity's principal "
                       "(object) id, a GUID", "find it with `az identity show --query principalId`")
    return value.lower()


# ---- Google Cloud Storage ---------------------------------------------------------------------------------------
_GCS_CHARS = re.compile(r"^[a-z0-9._-]+$")
_SA_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
_PROJECT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$|^[a-z0-9.-]+:[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_GCS_LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9+-]{1,62}$")
_SA_EMAIL = re.compile(r"^([a-z0-9][-a-z0-9]{0,62})@[a-z0-9][-a-z0-9.]*\.gserviceaccount\.com$")


def check_gcs_bucket(name: str) -> str:
    """Check a Cloud Storage bucket name.

    Rules: https://cloud.google.com/storage/docs/buckets#naming — 3–63 characters (up to 222 with dots, each
    dot-separated part ≤ 63); lowercase letters, digits, ``-``, ``_`` and ``.``; begins and ends with a letter or
    digit; not an IP address; must not begin with ``goog`` nor contain ``google`` (or close misspellings).

    Returns:
        The name, unchanged.

    Raises:
        BadInput: the name breaks a rule.
    """
    why = None
    limit = 222 if "." in name else 63
    if not 3 <= len(name) <= limit:
        why = f"is {len(name)} characters long; bucket names are 3–63 characters (222 with dots)"
    elif not _GCS_CHARS.match(name):
        why = "may contain only lowercase letters, digits, '-', '_' and '.'"
    elif not (name[0].isalnum() and name[-1].isalnum()):
        why = "must begin and end with a lowercase letter or a digit"
    elif any(len(part) > 63 for part in name.split(".")):
        why = "has a dot-separated part longer than 63 characters"
    elif _is_ip(name):
        why = "must not be formatted as an IP address"
    elif name.startswith("goog"):
        why = "must not begin with 'goog' (reserved by Google)"
    elif any(word in name for word in ("google", "g00gle", "googl3")):
        why = "must not contain 'google' or a close misspelling (reserved by Google)"
    if why:
        raise BadInput(f"invalid bucket name {name!r}: it {why}", "choose a valid name (Cloud Storage bucket "
                       "naming rules)")
    return name


def check_service_account_id(name: str) -> str:
    """Check a service-account id (the part before ``@<project>.iam.gserviceaccount.com``).

    Rules: https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create — 6–30 characters
    matching ``[a-z]([-a-z0-9]*[a-z0-9])``.

    Raises:
        BadInput: the id breaks a rule.
    """
    if not (6 <= len(name) <= 30 and _SA_ID.match(name)):
        raise BadInput(f"invalid --service-account {name!r}: service-account ids are 6–30 characters, lowercase "
                       "letters, digits and '-', starting with a letter and not ending with '-'",
                       "choose e.g. 'provision-acme-ro'")
    return name


def check_project(project: str) -> str:
    """Check a GCP project id.

    Rules: https://cloud.google.com/resource-manager/docs/creating-managing-projects — 6–30 characters, lowercase
    letters, digits and ``-``, starting with a letter, not ending with ``-`` (legacy ``domain:project`` ids kept).

    Raises:
        BadInput: the id breaks a rule.
    """
    if not _PROJECT.match(project):
        raise BadInput(f"invalid --project {project!r}: project ids are 6–30 lowercase letters, digits and '-', "
                       "starting with a letter", "pass the project id (not its name or number)")
    return project


def check_gcs_location(location: str) -> str:
    """Check the shape of a Cloud Storage bucket location (``US``, ``EU``, ``europe-west1``, ``nam4`` ...).

    Rule: https://cloud.google.com/storage/docs/locations — a multi-region, dual-region or region name: a letter,
    then 2–63 letters, digits, ``-`` or ``+``. Whether the location exists is left to Cloud Storage.

    Returns:
        The location, unchanged.

    Raises:
        BadInput: the value cannot be a location.
    """
    if not _GCS_LOCATION.match(location):
        raise BadInput(f"invalid --location {location!r}", "pass a Cloud Storage location such as US, EU or "
                       "europe-west1")
    return location


def service_account_email_id(email: str) -> str:
    """The id part of a service-account email: ``<id>@<project>.iam.gserviceaccount.com``, or a Google-managed
    account such as Compute Engine's default ``<number>-compute@developer.gserviceaccount.com`` (only adopted,
    never created).

    Rule: https://cloud.google.com/iam/docs/service-account-overview (service-account emails end in
    ``.gserviceaccount.com``).

    Returns:
        The part before ``@``.

    Raises:
        BadInput: not a service-account email.
    """
    match = _SA_EMAIL.match(email)
    if not match:
        raise BadInput(f"invalid --service-account {email!r}: not a service-account email",
                       "pass an id such as provision-acme-ro, or <id>@<project>.iam.gserviceaccount.com")
    return match.group(1)


# ---- durations and instants ---------------------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d{1,5})([dh])$")


def parse_expiry(value: str, now: datetime, what: str = "--sas-expiry") -> datetime:
    """Turn ``30d`` / ``12h`` / an ISO-8601 UTC instant into an aware UTC datetime after ``now``.

    Args:
        value: ``<N>d`` (days), ``<N>h`` (hours), or an ISO-8601 instant with ``Z`` or an explicit offset
            (``2027-01-31T00:00:00Z``); a naive instant is refused (its zone would be a guess).
        now: the current time (aware, UTC).
        what: the flag name, for messages.

    Returns:
        The expiry as an aware UTC datetime, whole seconds.

    Raises:
        BadInput: unparseable, zero, naive, or not in the future.
    """
    match = _DURATION.match(value.strip())
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise BadInput(f"invalid {what} {value!r}: a lifetime of zero", f"pass e.g. {what} 30d")
        delta = timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)
        return (now + delta).replace(microsecond=0)
    try:
        instant = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"invalid {what} {value!r}: expected Nd, Nh or an ISO-8601 UTC instant",
                       f"pass e.g. {what} 30d, {what} 12h or {what} 2027-01-31T00:00:00Z") from None
    if instant.tzinfo is None:
        raise BadInput(f"invalid {what} {value!r}: the instant has no time zone",
                       f"append Z for UTC, e.g. {what} {value.strip()}Z")
    instant = instant.astimezone(timezone.utc).replace(microsecond=0)
    if instant <= now:
        raise BadInput(f"invalid {what} {value!r}: it is in the past ({instant:%Y-%m-%dT%H:%M:%SZ})",
                       f"pass a future instant or a lifetime such as {what} 30d")
    return instant


def parse_duration(value: str, what: str) -> timedelta:
    """Turn ``7d`` / ``12h`` into a timedelta.

    Raises:
        BadInput: not ``<N>d`` or ``<N>h``.
    """
    match = _DURATION.match(value.strip())
    if not match:
        raise BadInput(f"invalid {what} {value!r}: expected Nd or Nh", f"pass e.g. {what} 7d")
    amount = int(match.group(1))
    return timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)


def resolve_buckets(buckets: list[str], prefix: str | None, check: Callable[[str], str],
                    noun: str = "bucket") -> list[str]:
    """The bucket (Azure: container) names of one grant: the names given, or Supervisely's pair for ``prefix``
    (`supervisely_pair`), each checked with the provider's rule ``check``.

    Args:
        buckets: names given on the command line or in the profile (may be empty).
        prefix: ``--prefix``, or None.
        check: the provider's name rule (`check_s3_bucket`, `check_container`, `check_gcs_bucket`).
        noun: ``bucket`` or ``container``, for messages.

    Returns:
        The names, in the order given.

    Raises:
        BadInput: both or neither of names and prefix, a name breaks the rule, or a name repeats.
    """
    upper = noun.upper()
    if buckets and prefix:
        raise BadInput(f"give {upper} names or --prefix, not both", "drop one of them")
    if not buckets and not prefix:
        raise BadInput(f"no {noun} given", f"pass {upper} names or --prefix P (for P-public and P-private)")
    names = list(buckets) if buckets else supervisely_pair(prefix or "")
    for name in names:
        check(name)
    if len(set(names)) != len(names):
        raise BadInput(f"{noun} names repeat: {', '.join(names)}", f"give each {noun} once")
    return names
