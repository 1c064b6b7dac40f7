"""What a platform does with each grant, decided from the stored Grants alone (pure: no I/O, no SDK).

A Supervisely install uses storage in two ways (Supervisely's storage guide, "How we store files" and "Links
plugin": https://docs.supervisely.com/enterprise-edition/advanced-tuning/s3):

- **Instance storage** (``.env`` ``STORAGE_*``): Supervisely *writes* every upload and model into
  ``<prefix>-public`` / ``<prefix>-private``, so the credential must read, write, delete and upload in parts there
  (``s3:ListBucketMultipartUploads`` included, for files over 4 GB). Only a full grant qualifies: an S3 key pair or
  IAM role, an Azure account key, a GCS key file or HMAC key.
- **Links connections** (``remote_links.yml``, one per connection name): existing datasets, read (usually
  read-only), any number, often on other clouds.

"IAM Roles are only supported for AWS S3" (same guide, "Keys from IAM Role"): an Azure or GCS keyless grant can be
neither.
"""

from __future__ import annotations

from typing import Any

from provision.errors import BadInput
from provision.models import Access, Grant

CAPABILITIES = ("read", "write", "delete", "multipart")
"""What Supervisely's instance storage does on its buckets."""

STORAGE_AUTHS = {"s3": ("key_pair", "role"), "azure": ("key_pair",), "gcs": ("key_file", "key_pair")}
"""Credential kinds Supervisely's storage backend of each provider takes: S3 (``minio``) an access key or an IAM
role; Azure the account name + account key; Google a service-account key file (or, over the S3 API, an HMAC key)."""

AUTH_NAMES = {"key_pair": "an access key", "sas": "a SAS token", "role": "an IAM role", "key_file": "a key file",
              "ambient": "no secret (keyless)"}
PROVIDER_NAMES = {"s3": "S3", "azure": "Azure", "gcs": "GCS"}

KEY_FILE_TARGET = "/gcs.json"
"""Where ``http-storage`` reads the instance storage's GCS key file (``STORAGE_CREDENTIALS_PATH``)."""


def storage_pair(buckets: list[str]) -> str | None:
    """The prefix ``P`` when ``buckets`` holds Supervisely's pair ``P-public`` and ``P-private``, else None."""
    for bucket in buckets:
        if bucket.endswith("-public") and bucket[: -len("-public")] + "-private" in buckets:
            return bucket[: -len("-public")]
    return None


def fix_command(provider: str, env: str, prefix: str = "PREFIX") -> str:
    """The command that provisions a grant able to be the instance storage on ``provider``."""
    flags = {"s3": "--full", "azure": "--account-key --full --account ACCOUNT", "gcs": "--full --project PROJECT"}
    return f"provision {provider} --prefix {prefix} {flags[provider]} --env {env}"


def keyless_refusal(name: str, grant: Grant, env: str) -> BadInput | None:
    """The refusal for a keyless Azure/GCS grant anywhere in Supervisely (IAM roles are for AWS S3 only), else
    None."""
    if grant.auth.kind != "ambient":
        return None
    what = "a key file: `provision gcs ... --grant {n}` without --keyless" if grant.provider == "gcs" else \
        "the account key: `provision azure --account-key ... --grant {n}`"
    return BadInput(f"grant {name!r} is a keyless {PROVIDER_NAMES[grant.provider]} grant, and Supervisely takes "
                    "IAM roles for AWS S3 only (neither its storage nor a Links connection can use it)",
                    f"provision {what.format(n=name)}, or leave it out with --grant")


def storage_gaps(grant: Grant) -> list[str]:
    """What ``grant`` lacks to be Supervisely's instance storage; empty when it qualifies.

    Returns:
        Human-readable gaps, e.g. ``["write", "delete", "multipart"]`` for a read-only key, ``["a credential
        Supervisely's Azure storage takes (it holds a SAS token; needs the account key)"]`` for a SAS, or
        ``["the bucket pair P-public / P-private"]``.
    """
    gaps: list[str] = []
    if grant.auth.kind not in STORAGE_AUTHS[grant.provider]:
        takes = " or ".join(AUTH_NAMES[k] for k in STORAGE_AUTHS[grant.provider])
        gaps.append(f"a credential Supervisely's {PROVIDER_NAMES[grant.provider]} storage takes (it holds "
                    f"{AUTH_NAMES[grant.auth.kind]}; needs {takes})")
    if grant.access != Access.full:
        gaps += ["write", "delete", "multipart"]
    if storage_pair(grant.buckets) is None:
        gaps.append("the bucket pair P-public / P-private")
    return gaps


def choose_storage(grants: dict[str, Grant], requested: str | None, env: str) -> str | None:
    """The grant that becomes Supervisely's instance storage (``.env`` ``STORAGE_*``).

    Args:
        grants: grant name -> Grant, the environment's grants that hold a credential.
        requested: ``render-env --storage NAME``, or None.
        env: the environment (for the hints).

    Returns:
        The grant's name; None when none qualifies and none was requested (``.env`` is then left alone).

    Raises:
        BadInput: ``requested`` is unknown or does not qualify (names what it lacks); several qualify and none
            was requested (names them).
    """
    if requested is not None:
        if requested not in grants:
            raise BadInput(f"--storage {requested!r} is not a grant of environment {env!r} with a credential "
                           f"(it holds: {', '.join(grants) or 'none'})", "pass one of those to --storage")
        grant = grants[requested]
        refusal = keyless_refusal(requested, grant, env)
        if refusal is not None:
            raise refusal
        gaps = storage_gaps(grant)
        if gaps:
            raise BadInput(f"grant {requested!r} cannot be Supervisely's instance storage, which writes every upload "
                           f"there: it lacks {', '.join(gaps)}", f"provision one that can: "
                           f"`{fix_command(grant.provider, env)}`")
        return requested
    qualified = [name for name, grant in grants.items() if grant.auth.kind != "ambient" and not storage_gaps(grant)]
    if len(qualified) > 1:
        raise BadInput(f"grants {', '.join(repr(n) for n in qualified)} can each be Supervisely's instance storage",
                       "pick one with --storage NAME")
    return qualified[0] if qualified else None


def key_target(name: str, storage: bool) -> str:
    """Where ``http-storage`` reads a GCS key file: `KEY_FILE_TARGET` for the instance storage, else
    ``/gcs-<grant>.json`` (each Links connection's key at its own path)."""
    return KEY_FILE_TARGET if storage else f"/gcs-{name}.json"


def links_endpoint(grant: Grant) -> str:
    """The ``endpoint`` of a ``remote_links.yml`` connection: the host, with ``:port`` when not 443."""
    if grant.port and grant.port != 443 and ":" not in grant.endpoint.split("//")[-1]:
        return f"{grant.endpoint}:{grant.port}"
    return grant.endpoint


def links_connection(name: str, grant: Grant, env: str) -> dict[str, Any]:
    """One ``remote_links.yml`` connection for ``grant``, in Supervisely's format: ``provider`` (``minio`` for S3
    and GCS HMAC, ``azure``, ``google``), ``endpoint``, the credential (``access_key``/``secret_key``, where
    Azure's ``access_key`` is the account name and ``secret_key`` the account key or a SAS token; or ``iam_role``;
    or ``credentials_path``, the key file inside the container at `key_target`), ``region`` (S3-compatible only),
    ``buckets``.

    Raises:
        BadInput: a keyless Azure/GCS grant (`keyless_refusal`).
    """
    refusal = keyless_refusal(name, grant, env)
    if refusal is not None:
        raise refusal
    auth = grant.auth
    connection: dict[str, Any] = {"provider": grant.storage_provider, "endpoint": links_endpoint(grant)}
    if auth.kind == "key_pair":
        connection.update(access_key=auth.access_key, secret_key=auth.secret_key)
    elif auth.kind == "sas":
        connection.update(access_key=auth.account_name, secret_key=auth.token.lstrip("?"))
    elif auth.kind == "role":
        connection["iam_role"] = auth.role_name
    elif auth.kind == "key_file":
        connection["credentials_path"] = key_target(name, storage=False)
    if grant.region and grant.storage_provider == "minio":
        connection["region"] = grant.region
    connection["buckets"] = list(grant.buckets)
    return connection
