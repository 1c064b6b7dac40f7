"""`verify` for Cloud Storage: a table of probes (`provision.providers.base.Probe`) run with the grant's own
credential against objects the admin credentials put there for the purpose, and a bucket of nobody's grant.

Key file (JSON API): objects.list, objects.get, buckets.get allowed; objects.create and objects.delete allowed
only for ``full``; buckets.setIamPolicy (re-sending the current policy, so an allowed call changes nothing) and
buckets.list denied; objects.list/get/create on another bucket (``provision-verify-<hex>``, made for the probe)
denied. HMAC key: the same data probes through the S3-interoperable endpoint (XML API). Permissions of the roles:
https://cloud.google.com/storage/docs/access-control/iam-roles.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from provision.errors import BadInput, CloudRefused, ProvisionError
from provision.models import Access, Ambient, Grant, KeyFile, KeyPair
from provision.providers.base import Probe, VerifyRow, run_probes
from provision.providers.gcp.buckets import locked_down
from provision.providers.gcp.options import SANDBOX_NOTE
from provision.providers.gcp.sdk import TIMEOUT, GcsClients, cloud_errors, describe, storage_retry

DENIED = (401, 403)
"""HTTP statuses that mean "this credential may not"."""


@dataclass(frozen=True)
class Setup:
    """What the probes run on.

    Attributes:
        buckets: the grant's buckets. full: the grant may write.
        probe: the key of the object put in each of them (``.provision-verify/<hex>``).
        other: a bucket of nobody's grant (``provision-verify-<hex>``). project: the project (buckets.list).
    """

    buckets: list[str]
    full: bool
    probe: str
    other: str
    project: str

    @classmethod
    def new(cls, grant: Grant, project: str) -> Setup:
        """Fresh names for one run of the probes."""
        token = uuid.uuid4().hex[:10]
        return cls(list(grant.buckets), grant.access == Access.full, f".provision-verify/{token}",
                   f"provision-verify-{token}", project)


def key_file_probes(user: Any, policy_of: Callable[[str], Any], s: Setup) -> Iterator[Probe]:
    """The probe table of a key-file grant (JSON API), built row by row.

    Args:
        user: a google-cloud-storage client with the grant's key file (only used when a probe runs).
        policy_of: reads a bucket's current IAM policy with the admin credentials (called while the table is
            iterated, before the buckets.setIamPolicy row; its errors propagate).
        s: the setup.
    """
    no_retry = {"retry": None, "timeout": TIMEOUT}
    for name in s.buckets:
        yield Probe("objects.list", name, True, lambda name=name: list(user.list_blobs(name, max_results=1,
                                                                                      **no_retry)))
        yield Probe("objects.get", f"{name}/{s.probe}", True,
                    lambda name=name: user.bucket(name).blob(s.probe).download_as_bytes(**no_retry))
        yield Probe("buckets.get", name, True, lambda name=name: user.get_bucket(name, **no_retry))
        yield Probe("objects.create", f"{name}/{s.probe}.w", s.full,
                    lambda name=name: user.bucket(name).blob(f"{s.probe}.w").upload_from_string(b"x", **no_retry))
        yield Probe("objects.delete", f"{name}/{s.probe}", s.full,
                    lambda name=name: user.bucket(name).blob(s.probe).delete(**no_retry))
        policy = policy_of(name)
        yield Probe("buckets.setIamPolicy", name, False,
                    lambda name=name, policy=policy: user.bucket(name).set_iam_policy(policy, **no_retry))
    yield Probe("buckets.list", f"project {s.project}", False,
                lambda: list(user.list_buckets(project=s.project, max_results=1, **no_retry)))
    target = f"{s.other} (another bucket)"
    yield Probe("objects.list", target, False, lambda: list(user.list_blobs(s.other, max_results=1, **no_retry)))
    yield Probe("objects.get", target, False,
                lambda: user.bucket(s.other).blob(s.probe).download_as_bytes(**no_retry))
    yield Probe("objects.create", target, False,
                lambda: user.bucket(s.other).blob("x").upload_from_string(b"x", **no_retry))


def hmac_probes(s3: Any, s: Setup) -> Iterator[Probe]:
    """The probe table of an HMAC grant (S3-interoperable XML API).

    Args:
        s3: a boto3 S3 client with the grant's HMAC key on the interoperable endpoint (only used when a probe
            runs).
        s: the setup.
    """
    for name in s.buckets:
        yield Probe("ListObjectsV2", name, True, lambda name=name: s3.list_objects_v2(Bucket=name, MaxKeys=1))
        yield Probe("GetObject", f"{name}/{s.probe}", True, lambda name=name: s3.get_object(Bucket=name, Key=s.probe))
        yield Probe("PutObject", f"{name}/{s.probe}.w", s.full,
                    lambda name=name: s3.put_object(Bucket=name, Key=f"{s.probe}.w", Body=b"x"))
        yield Probe("DeleteObject", f"{name}/{s.probe}", s.full,
                    lambda name=name: s3.delete_object(Bucket=name, Key=s.probe))
    yield Probe("ListBuckets", "*", False, lambda: s3.list_buckets())
    target = f"{s.other} (another bucket)"
    yield Probe("ListObjectsV2", target, False, lambda: s3.list_objects_v2(Bucket=s.other))
    yield Probe("PutObject", target, False, lambda: s3.put_object(Bucket=s.other, Key="x", Body=b"x"))


def json_api_outcome(exc: BaseException) -> str | None:
    """A key-file probe's failure: ``deny`` for 401/403, ``error: <status>`` for another answer, ``error: <type>``
    for an auth error; None (propagate) for anything else."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError

    if isinstance(exc, GoogleAPICallError):
        return "deny" if exc.code in DENIED else f"error: {exc.code}"
    if isinstance(exc, GoogleAuthError):
        return f"error: {type(exc).__name__}"
    return None


def xml_api_outcome(exc: BaseException) -> str | None:
    """An HMAC probe's failure: ``deny`` for 401/403 or AccessDenied/Forbidden, ``error: <code>`` for another
    answer, ``error: <type>`` for a client error (no answer); None (propagate) for anything else."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return "deny" if status in DENIED or code in ("AccessDenied", "Forbidden") else f"error: {code}"
    if isinstance(exc, BotoCoreError):
        return f"error: {type(exc).__name__}"
    return None


def hmac_client(grant: Grant) -> Any:
    """A boto3 S3 client with the grant's HMAC key on its interoperable endpoint (path-style, SigV4, 2 attempts)."""
    import boto3
    from botocore.config import Config

    assert isinstance(grant.auth, KeyPair)
    return boto3.client("s3", endpoint_url=f"https://{grant.endpoint}:{grant.port or 443}", region_name="auto",
                        aws_access_key_id=grant.auth.access_key, aws_secret_access_key=grant.auth.secret_key,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"mode": "standard", "max_attempts": 2}))


def verify(clients: GcsClients, grant: Grant | None, location: str) -> list[VerifyRow]:
    """Probe ``grant``'s credential: put the probe objects and the other bucket in place with the admin
    credentials, run the table of the grant's kind, and remove them again.

    Args:
        clients: the SDK seam (the admin's client; the grant's key file). grant: the stored Grant.
        location: where the other bucket is made.

    Returns:
        One row per probe, in table order.

    Raises:
        BadInput: the sandbox (its emulator enforces no IAM: nothing true to probe); a keyless grant (the
            identity lives on the VM); an HMAC grant while Cloud Storage is an emulator (no S3 interoperability).
        CloudRefused: the probes could not be set up with the admin credentials.
        ProvisionError: the probe objects could not be removed (names what to delete by hand).
    """
    if clients.emulated:
        raise BadInput(f"nothing true to probe: {SANDBOX_NOTE}, and its emulator enforces no permission",
                       "verify against a real project")
    if grant is None or isinstance(grant.auth, Ambient):
        raise BadInput("this grant has no key to probe (--keyless: the VM's attached service account)",
                       "verify from the VM that carries the service account")
    if isinstance(grant.auth, KeyPair) and clients.storage_endpoint():
        raise BadInput(f"an HMAC key works on the S3-interoperable endpoint, which {clients.storage_endpoint()} "
                       "(an emulator) does not serve", "verify against a real project")
    admin = clients.storage()
    s = Setup.new(grant, clients.project)
    try:
        admin.create_bucket(locked_down(admin.bucket(s.other)), project=s.project, location=location,
                            retry=storage_retry(), timeout=TIMEOUT)
        for bucket in s.buckets:
            admin.bucket(bucket).blob(s.probe).upload_from_string(b"provision verify", retry=storage_retry(),
                                                                  timeout=TIMEOUT)
        if isinstance(grant.auth, KeyFile):
            user = clients.storage(clients.key_credentials(grant.auth.path))

            def policy_of(name: str) -> Any:
                return admin.bucket(name).get_iam_policy(requested_policy_version=3, retry=storage_retry(),
                                                         timeout=TIMEOUT)

            return run_probes(key_file_probes(user, policy_of, s), json_api_outcome)
        return run_probes(hmac_probes(hmac_client(grant), s), xml_api_outcome)
    except cloud_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {describe(exc)}",
                           "check the admin credentials") from None
    finally:
        cleanup(admin, s)


def cleanup(admin: Any, s: Setup) -> None:
    """Remove verify's probe objects and the other bucket with the admin credentials (those already gone are
    skipped).

    Raises:
        ProvisionError: they could not be removed (names what to delete by hand).
    """
    from google.api_core.exceptions import NotFound

    try:
        for name in s.buckets:
            for key in (s.probe, f"{s.probe}.w"):
                try:
                    admin.bucket(name).blob(key).delete(retry=storage_retry(), timeout=TIMEOUT)
                except NotFound:
                    pass
        try:
            for blob in admin.list_blobs(s.other, retry=storage_retry(), timeout=TIMEOUT):
                blob.delete(retry=storage_retry(), timeout=TIMEOUT)
            admin.bucket(s.other).delete(retry=storage_retry(), timeout=TIMEOUT)
        except NotFound:
            pass
    except cloud_errors() as exc:
        raise ProvisionError(f"verify could not remove its probe objects: {describe(exc)}",
                             f"delete bucket {s.other} and objects {s.probe}* by hand") from None
