"""`verify` for Cloud Storage: a table of probes (`provision.providers.base.Probe`) run with the grant's own
credential against objects the admin credentials put there for the purpose, and a bucket of nobody's grant.

Key file (JSON API): the reads of a Links connection and CVAT (objects.list, also by folder; objects.get of the
media, the metadata and a byte range; buckets.get, CVAT's attach check:
https://docs.cvat.ai/docs/manual/basics/attach-cloud-storages/) allowed; objects.create (single and resumable in two
chunks) and objects.delete allowed only for ``full``; buckets.setIamPolicy (re-sending the current policy, so an
allowed call changes nothing) and buckets.list denied; objects.list/get/create on another bucket
(``provision-verify-<hex>``, made for the probe) denied. HMAC key: the same data probes through the
S3-interoperable endpoint (XML API). Every probe uses its own object, so the table runs concurrently.
Permissions of the roles:
https://cloud.google.com/storage/docs/access-control/iam-roles.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from provision.errors import BadInput, CloudRefused, ProvisionError
from provision.models import Access, Ambient, Grant, KeyFile, KeyPair
from provision.providers.base import Probe, VerifyRow, run_concurrently, run_probes
from provision.providers.gcp.buckets import locked_down
from provision.providers.gcp.options import SANDBOX_NOTE
from provision.providers.gcp.sdk import TIMEOUT, GcsClients, cloud_errors, describe, storage_retry

DENIED = (401, 403)
"""HTTP statuses that mean "this credential may not"."""
PROBE_DATA = b"provision verify"


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

    @property
    def put(self) -> tuple[str, ...]:
        """The objects the set-up puts in every bucket: ``probe`` (the reads) and ``<probe>.d`` (objects.delete's,
        distinct so the probes may run concurrently)."""
        return (self.probe, f"{self.probe}.d")

    @property
    def written(self) -> tuple[str, ...]:
        """The objects the write probes may make in a bucket (removed afterwards)."""
        return tuple(f"{self.probe}{suffix}" for suffix in (".w", ".r", ".c"))


CHUNK = 256 * 1024
"""The chunk size of the resumable-upload probe (Cloud Storage's chunk granularity); it sends ``CHUNK + 1`` bytes,
so two chunks."""
RANGE_END = 1023
"""The ranged read of the probes: bytes 0-1023 (what a viewer or CVAT's chunk reader asks for)."""


def key_file_probes(user: Any, policy_of: Callable[[str], Any], s: Setup) -> list[Probe]:
    """The probe table of a key-file grant (JSON API); building it makes no request, and every probe uses its own
    object, so they may run concurrently.

    Per bucket: objects.list, objects.get (media), buckets.get (allow; CVAT's attach check); objects.create,
    objects.delete (of ``<probe>.d``) (``full``); buckets.setIamPolicy (deny); objects.list with delimiter ``/``,
    objects.get of the metadata and of bytes 0-1023 (allow: a Links connection and CVAT browse and read this way);
    a resumable upload in two chunks (``full``: how large files are uploaded). Then buckets.list and
    objects.list/get/create on the other bucket (deny).

    Args:
        user: a google-cloud-storage client with the grant's key file (only used when a probe runs).
        policy_of: reads a bucket's current IAM policy with the admin credentials (called by the
            buckets.setIamPolicy probe before it sends that policy back; its errors become `CloudRefused`).
        s: the setup.
    """
    no_retry = {"retry": None, "timeout": TIMEOUT}
    rows: list[Probe] = []
    for name in s.buckets:
        rows += [
            Probe("objects.list", name, True, lambda name=name: list(user.list_blobs(name, max_results=1,
                                                                                    **no_retry))),
            Probe("objects.get", f"{name}/{s.probe}", True,
                  lambda name=name: user.bucket(name).blob(s.probe).download_as_bytes(**no_retry)),
            Probe("buckets.get", name, True, lambda name=name: user.get_bucket(name, **no_retry)),
            Probe("objects.create", f"{name}/{s.probe}.w", s.full,
                  lambda name=name: user.bucket(name).blob(f"{s.probe}.w").upload_from_string(b"x", **no_retry)),
            Probe("objects.delete", f"{name}/{s.probe}.d", s.full,
                  lambda name=name: user.bucket(name).blob(f"{s.probe}.d").delete(**no_retry)),
            Probe("buckets.setIamPolicy", name, False,
                  lambda name=name: user.bucket(name).set_iam_policy(_admin_read(policy_of, name), **no_retry)),
            Probe("objects.list", f"{name} (delimiter=/)", True,
                  lambda name=name: list(next(user.list_blobs(name, delimiter="/", max_results=1,
                                                              **no_retry).pages, []))),
            Probe("objects.get", f"{name}/{s.probe} (metadata)", True,
                  lambda name=name: user.bucket(name).blob(s.probe).reload(**no_retry)),
            Probe("objects.get", f"{name}/{s.probe} (Range bytes=0-{RANGE_END})", True,
                  lambda name=name: user.bucket(name).blob(s.probe).download_as_bytes(start=0, end=RANGE_END,
                                                                                      **no_retry)),
            Probe("objects.create", f"{name}/{s.probe}.r (resumable upload, 2 chunks)", s.full,
                  lambda name=name: user.bucket(name).blob(f"{s.probe}.r", chunk_size=CHUNK).upload_from_string(
                      bytes(CHUNK + 1), **no_retry)),
        ]
    target = f"{s.other} (another bucket)"
    return rows + [
        Probe("buckets.list", f"project {s.project}", False,
              lambda: list(user.list_buckets(project=s.project, max_results=1, **no_retry))),
        Probe("objects.list", target, False, lambda: list(user.list_blobs(s.other, max_results=1, **no_retry))),
        Probe("objects.get", target, False, lambda: user.bucket(s.other).blob(s.probe).download_as_bytes(**no_retry)),
        Probe("objects.create", target, False,
              lambda: user.bucket(s.other).blob("x").upload_from_string(b"x", **no_retry)),
    ]


def _admin_read(read: Callable[[str], Any], name: str) -> Any:
    """``read(name)`` with the admin credentials inside a probe; its failure is the set-up's, not the grant's
    verdict.

    Raises:
        CloudRefused: the admin credentials could not read (propagates out of `run_probes`)."""
    try:
        return read(name)
    except cloud_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {describe(exc)}",
                           "check the admin credentials") from None


def hmac_probes(s3: Any, s: Setup) -> list[Probe]:
    """The probe table of an HMAC grant (S3-interoperable XML API); building it makes no request.

    Per bucket: ListObjectsV2, GetObject (allow); PutObject, DeleteObject (of ``<probe>.d``) (``full``); the reads
    of a Links connection and CVAT (`provision.providers.aws.verify.link_probes`: HeadBucket, ListObjectsV2 with
    a delimiter, HeadObject, a ranged GetObject; allow); a complete multipart upload (``full``). Then
    ListBuckets, ListObjectsV2 and PutObject on the other bucket (deny).

    Args:
        s3: a boto3 S3 client with the grant's HMAC key on the interoperable endpoint (only used when a probe
            runs; it also aborts a multipart upload a refusal left unfinished).
        s: the setup.
    """
    from provision.providers.aws.verify import link_probes, multipart_probe

    rows: list[Probe] = []
    for name in s.buckets:
        rows += [
            Probe("ListObjectsV2", name, True, lambda name=name: s3.list_objects_v2(Bucket=name, MaxKeys=1)),
            Probe("GetObject", f"{name}/{s.probe}", True, lambda name=name: s3.get_object(Bucket=name, Key=s.probe)),
            Probe("PutObject", f"{name}/{s.probe}.w", s.full,
                  lambda name=name: s3.put_object(Bucket=name, Key=f"{s.probe}.w", Body=b"x")),
            Probe("DeleteObject", f"{name}/{s.probe}.d", s.full,
                  lambda name=name: s3.delete_object(Bucket=name, Key=f"{s.probe}.d")),
            *link_probes(s3, name, s.probe),
            multipart_probe(s3, None, name, f"{s.probe}.c", s.full),
        ]
    target = f"{s.other} (another bucket)"
    return rows + [
        Probe("ListBuckets", "*", False, lambda: s3.list_buckets()),
        Probe("ListObjectsV2", target, False, lambda: s3.list_objects_v2(Bucket=s.other)),
        Probe("PutObject", target, False, lambda: s3.put_object(Bucket=s.other, Key="x", Body=b"x")),
    ]


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
    put = {"retry": storage_retry(), "timeout": TIMEOUT}

    def make_other() -> None:
        admin.create_bucket(locked_down(admin.bucket(s.other)), project=s.project, location=location, **put)
        admin.bucket(s.other).blob(s.probe).upload_from_string(PROBE_DATA, **put)

    try:
        run_concurrently([make_other] + [partial(admin.bucket(name).blob(key).upload_from_string, PROBE_DATA, **put)
                                         for name in s.buckets for key in s.put])
        if isinstance(grant.auth, KeyFile):
            user = clients.storage(clients.key_credentials(grant.auth.path))

            def policy_of(name: str) -> Any:
                return admin.bucket(name).get_iam_policy(requested_policy_version=3, **put)

            return run_probes(key_file_probes(user, policy_of, s), json_api_outcome)
        return run_probes(hmac_probes(hmac_client(grant), s), xml_api_outcome)
    except cloud_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {describe(exc)}",
                           "check the admin credentials") from None
    finally:
        cleanup(admin, s)


def cleanup(admin: Any, s: Setup) -> None:
    """Remove verify's probe objects and the other bucket with the admin credentials, concurrently (those already
    gone are skipped).

    Raises:
        ProvisionError: they could not be removed (names what to delete by hand).
    """
    from google.api_core.exceptions import NotFound

    options = {"retry": storage_retry(), "timeout": TIMEOUT}

    def unless_gone(call: Callable[[], Any]) -> None:
        try:
            call()
        except NotFound:
            pass

    def remove_other() -> None:
        for blob in admin.list_blobs(s.other, **options):
            blob.delete(**options)
        admin.bucket(s.other).delete(**options)

    try:
        run_concurrently([partial(unless_gone, remove_other)] + [
            partial(unless_gone, partial(admin.bucket(name).blob(key).delete, **options))
            for name in s.buckets for key in s.put + s.written])
    except cloud_errors() as exc:
        raise ProvisionError(f"verify could not remove its probe objects: {describe(exc)}",
                             f"delete bucket {s.other} and objects {s.probe}* by hand") from None
