"""Google Cloud Storage: buckets with uniform bucket-level access and public access prevention, a service account
bound to exactly those buckets, and one credential (a JSON key file, an HMAC key, or none with ``--keyless``).

Two SDK seams, one per API, both made here and nowhere else:

- `GcsProvider.storage` (google-cloud-storage): buckets, bucket IAM, HMAC keys, objects. Endpoint: the sandbox's
  emulator, else ``STORAGE_EMULATOR_HOST``, else Google's. Retries are the SDK's own, with a 15 s budget instead of
  its default 120 s (a CLI should not hang for two minutes).
- `GcsProvider.iam` (google-cloud-iam ``IAMClient``): service accounts and their keys. Endpoint: Google's, or
  ``PROVISION_GCP_IAM_ENDPOINT`` (Private Service Connect, a local fake). google-cloud-iam 2.27 generates only the
  gRPC transport for ``iam_admin_v1`` (there is no ``transport="rest"``), so the client speaks gRPC; an endpoint on
  the loopback interface is reached with gRPC's local (plaintext, loopback-only) channel credentials.

Admin credentials come from Application Default Credentials (``google.auth.default``) outside the sandbox, and are
anonymous in the sandbox, whose emulator has no IAM at all: there, only ``--keyless`` works and service account,
bindings and keys are reported as skipped. Every mutating call goes through `Plan.write`; every created resource is
recorded in state (intent first) and saved at once.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import mimetypes
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from provision.errors import BadInput, CloudRefused, PartialFailure, ProvisionError, refusing
from provision.models import Access, Ambient, Grant, KeyFile, KeyPair, Resource
from provision.names import check_gcs_bucket, check_project, check_service_account_id, resolve_buckets
from provision.policies import GCS_ROLES, gcs_bindings, merge_bindings
from provision.profiles import Profile
from provision.providers.base import Plan, VerifyRow
from provision.state import State, state_dir

SANDBOX_NOTE = "the sandbox has no IAM: service accounts, bindings and keys need a real project"
"""Said wherever the sandbox cannot do what a real project does (its GCS emulator has no IAM)."""
IAM_ENDPOINT_ENV = "PROVISION_GCP_IAM_ENDPOINT"
"""Environment variable naming the IAM admin endpoint (``host:port``); default ``iam.googleapis.com``."""
INTEROP_ENDPOINT = "storage.googleapis.com"
"""Cloud Storage's S3-interoperable (XML API) host, where HMAC keys work (Supervisely's ``minio`` provider)."""
DEFAULT_LOCATION = "US"
"""Bucket location when ``--location`` is not given (Cloud Storage's own default)."""
CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
RETRY_SECONDS = 15.0
"""Total seconds the SDK may spend retrying one transient failure (429, 5xx, connection reset)."""
TIMEOUT = (10.0, 60.0)
"""(connect, read) timeouts in seconds for each Cloud Storage request."""
IAM_TIMEOUT = 30.0
"""Seconds allowed for each IAM admin call."""
PROBE_TIMEOUT = float(os.environ.get("PROVISION_PROBE_TIMEOUT", "90"))
"""Seconds to keep retrying a bucket binding whose new service account IAM does not know yet (eventually
consistent)."""
POLICY_ATTEMPTS = 5
"""Read-modify-write attempts on a bucket's IAM policy when its etag changed under us (412 / 409)."""
_SANDBOX_PROJECT = re.compile(r"^[a-z][-a-z0-9]{0,29}$")
_LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9+-]{1,62}$")
_SA_EMAIL = re.compile(r"^([a-z0-9][-a-z0-9]{0,62})@[a-z0-9][-a-z0-9.]*\.gserviceaccount\.com$")
"""A service-account email: ``<id>@<project>.iam.gserviceaccount.com``, or Google-managed ones such as Compute
Engine's default ``<number>-compute@developer.gserviceaccount.com`` (only adopted, never created)."""
_DENIED = (401, 403)


def _retry() -> Any:
    """google-cloud-storage's own retry policy (429, 5xx, connection errors) with a `RETRY_SECONDS` budget."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_SECONDS).with_delay(initial=0.25, maximum=4.0, multiplier=2.0)


def _iam_retry() -> Any:
    """Retry for idempotent IAM admin reads/deletes: UNAVAILABLE and DEADLINE_EXCEEDED, `RETRY_SECONDS` budget."""
    from google.api_core import exceptions, retry

    return retry.Retry(initial=0.25, maximum=4.0, multiplier=2.0, timeout=RETRY_SECONDS,
                       predicate=retry.if_exception_type(exceptions.ServiceUnavailable,
                                                         exceptions.DeadlineExceeded))


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def _cloud_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "Google refused or could not be reached" (API errors, auth errors, transport)."""
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return (GoogleAPIError, GoogleAuthError, requests.RequestException)


def _md5_hex(md5_base64: str | None) -> str:
    """Cloud Storage's base64 ``md5Hash`` as lowercase hex ("" when the object has none, e.g. composite objects)."""
    return base64.b64decode(md5_base64).hex() if md5_base64 else ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_file_path(env: str, key_id: str) -> Path:
    """Where JSON key ``key_id`` of environment ``env`` lives: ``<state dir>/keys/<env>-<key id, 12 chars>.json``
    (absolute; 0600 in a 0700 directory). One file per key, so a rotation changes the path that
    ``docker-compose.override.yml`` mounts and ``supervisely up -d`` recreates ``http-storage`` with the new key
    (a bind-mounted file replaced under the same path would stay the old, deleted key inside a running container).
    """
    return state_dir() / "keys" / f"{env}-{key_id[:12]}.json"


class GcsProvider:
    """Provision Cloud Storage buckets and a least-privilege service account for them.

    Args:
        profile: the validated inputs (``provider == "gcs"``). No I/O happens here.

    Raises:
        BadInput: from `check`: invalid bucket / service-account / project names, conflicting options, a key file
            or HMAC key asked of the sandbox.
    """

    name = "gcs"

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._sandbox: Any = None
        self._credentials: Any = None
        self.buckets = self.check()

    # ---- validation (pure, before any call) -------------------------------------------------------------------
    def check(self) -> list[str]:
        """Validate the profile for Cloud Storage; returns the bucket names.

        Rules: bucket names (`provision.names.check_gcs_bucket`), service-account ids 6–30 characters
        ``[a-z]([-a-z0-9]*[a-z0-9])`` (`check_service_account_id`), project ids (`check_project`; in the sandbox the
        project is only a label, since the emulator has no projects), one credential kind per grant (``--hmac`` and
        ``--keyless`` exclude each other), and in the sandbox only ``--keyless`` (shared/REFERENCE.md §5: the
        emulator has no IAM).

        Raises:
            BadInput: see the class docstring.
        """
        p = self.profile
        buckets = resolve_buckets(p.buckets, p.prefix, check_gcs_bucket, "bucket")
        if p.hmac and p.keyless:
            raise BadInput("--hmac and --keyless are mutually exclusive",
                           "one credential kind per grant: a JSON key file (the default), --hmac, or --keyless")
        if p.location is not None and not _LOCATION.match(p.location):
            raise BadInput(f"invalid --location {p.location!r}", "pass a Cloud Storage location such as US, EU or "
                           "europe-west1")
        if p.sandbox:
            if not p.keyless:
                kind = "an HMAC key" if p.hmac else "a JSON key file"
                raise BadInput(f"{SANDBOX_NOTE}; {kind} cannot be issued here",
                               "pass --keyless to try buckets in the sandbox, or use a real project")
            if p.project is not None and not _SANDBOX_PROJECT.match(p.project):
                raise BadInput(f"invalid --project {p.project!r}: lowercase letters, digits and '-', starting with "
                               "a letter", "pass e.g. --project demo (in the sandbox the project is only a label)")
        else:
            if not p.project:
                raise BadInput("no --project given", "pass --project PROJECT_ID (or set project: in the env's "
                               "profile, envs/<env>.yaml)")
            check_project(p.project)
        self.service_account_email()  # checks --service-account
        return buckets

    @property
    def project(self) -> str:
        """The project id: ``--project``, or in the sandbox the sandbox's project."""
        if self.profile.project:
            return self.profile.project
        return str(self.sandbox().project)

    @property
    def location(self) -> str:
        """``--location`` or `DEFAULT_LOCATION`."""
        return self.profile.location or DEFAULT_LOCATION

    def service_account_id(self) -> str:
        """``--service-account`` (an id, or the id part of an email), or ``provision-<prefix or first bucket>-<ro|rw>``
        shortened to the 30-character limit.

        Raises:
            BadInput: the id breaks the service-account id rules.
        """
        given = self.profile.service_account
        if given:
            if "@" in given:
                match = _SA_EMAIL.match(given)
                if not match:
                    raise BadInput(f"invalid --service-account {given!r}: not a service-account email",
                                   "pass an id such as provision-acme-ro, or <id>@<project>.iam.gserviceaccount.com")
                return match.group(1)
            return check_service_account_id(given)
        label = self.profile.prefix or (self.profile.buckets[0] if self.profile.buckets else "grant")
        label = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:16].strip("-") or "grant"
        suffix = "rw" if self.profile.access == Access.full else "ro"
        return check_service_account_id(f"provision-{label}-{suffix}")

    def service_account_email(self) -> str:
        """The service account's email: ``--service-account`` when it is one, else
        ``<id>@<project>.iam.gserviceaccount.com`` (domain-scoped ``example.com:proj`` projects:
        ``<id>@proj.example.com.iam.gserviceaccount.com``)."""
        given = self.profile.service_account
        if given and "@" in given:
            self.service_account_id()
            return given
        sa_id = self.service_account_id()
        project = self.profile.project or "sandbox"
        if ":" in project:
            domain, name = project.split(":", 1)
            return f"{sa_id}@{name}.{domain}.iam.gserviceaccount.com"
        return f"{sa_id}@{project}.iam.gserviceaccount.com"

    # ---- the seams for SDK clients ----------------------------------------------------------------------------
    def sandbox(self) -> Any:
        """The running sandbox's Cloud Storage endpoint (``--env sandbox``). Raises BadInput when it is not running
        or has no GCS emulator."""
        if self._sandbox is None:
            from provision.sandbox import require_info

            self._sandbox = require_info().require_gcs()
        return self._sandbox

    def storage_endpoint(self) -> str | None:
        """The Cloud Storage JSON API endpoint: the sandbox's emulator, ``STORAGE_EMULATOR_HOST`` (``http://`` added
        when it has no scheme), or None for Google's."""
        if self.profile.sandbox:
            return str(self.sandbox().endpoint_url)
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        if host:
            return host if "://" in host else f"http://{host}"
        return None

    def credentials(self) -> Any:
        """The admin credentials: anonymous in the sandbox, else Application Default Credentials.

        Raises:
            CloudRefused: no credentials found.
        """
        if self._credentials is None:
            if self.profile.sandbox:
                from google.auth.credentials import AnonymousCredentials

                self._credentials = AnonymousCredentials()
            else:
                import google.auth
                from google.auth.exceptions import DefaultCredentialsError

                try:
                    self._credentials, _ = google.auth.default(scopes=[CLOUD_SCOPE])
                except DefaultCredentialsError:
                    raise CloudRefused("no Google credentials found", "run `gcloud auth application-default "
                                       "login`, set GOOGLE_APPLICATION_CREDENTIALS, or try --env sandbox") from None
        return self._credentials

    def storage(self, credentials: Any = None) -> Any:
        """A google-cloud-storage client on `storage_endpoint`: admin credentials, or ``credentials`` when given."""
        from google.cloud import storage

        endpoint = self.storage_endpoint()
        return storage.Client(project=self.project, credentials=credentials or self.credentials(),
                              client_options={"api_endpoint": endpoint} if endpoint else None)

    def iam(self) -> Any:
        """The IAM admin client (service accounts, keys) on ``$PROVISION_GCP_IAM_ENDPOINT`` or Google's endpoint."""
        from google.cloud import iam_admin_v1

        endpoint = os.environ.get(IAM_ENDPOINT_ENV) or None
        if endpoint is None:
            return iam_admin_v1.IAMClient(credentials=self.credentials())
        host = endpoint.split("://", 1)[-1].rstrip("/")
        if _is_loopback(urlparse(f"//{host}").hostname or ""):
            import grpc
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

            transport = IAMGrpcTransport(
                host=host, credentials=self.credentials(), always_use_jwt_access=True,
                ssl_channel_credentials=grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP))
            return iam_admin_v1.IAMClient(transport=transport)
        return iam_admin_v1.IAMClient(credentials=self.credentials(), client_options={"api_endpoint": host})

    def sa_path(self, email: str | None = None) -> str:
        """The IAM resource name of the service account (``projects/<project>/serviceAccounts/<email>``; ``-`` as
        the project for an account given by email, which may live in another project)."""
        email = email or self.service_account_email()
        project = "-" if self.profile.service_account and "@" in self.profile.service_account else self.project
        return f"projects/{project}/serviceAccounts/{email}"

    # ---- apply ------------------------------------------------------------------------------------------------
    def apply(self, state: State, plan: Plan, save: Callable[[], None]) -> Grant | None:
        """Ensure buckets, service account, bucket bindings and the credential (see `Provider`).

        Returns:
            The Grant; None in dry-run when a new key would be issued.

        ``--rotate`` with ``--keyless`` has nothing to rotate and says so.

        Raises:
            CloudRefused: Google refused before anything was created (credentials, permission, name taken), or an
                organisation policy forbids service-account keys (the message names ``--hmac`` and ``--keyless``).
            PartialFailure: Google refused after something was created; state records it.
        """
        if plan.rotate and self.profile.keyless:
            plan.note("no change", "credential", "-", "--rotate: a keyless grant has no key to rotate")
        before = len([r for r in state.resources if r.created])
        try:
            storage = self.storage()
            for bucket in self.buckets:
                self._ensure_bucket(storage, bucket, state, plan, save)
            if self.profile.sandbox:
                for kind in ("service_account", "bucket_binding"):
                    plan.note("no change", kind, "-", f"skipped: {SANDBOX_NOTE}")
                return self.grant(Ambient())
            iam = self.iam()
            email, new_sa = self._ensure_service_account(iam, state, plan, save)
            for bucket in self.buckets:
                self._ensure_binding(storage, bucket, email, new_sa, state, plan, save)
            auth: Any
            if self.profile.keyless:
                plan.note("no change", "credential", email, "keyless: attach this service account to the VM that "
                          "runs the platform; no key is issued")
                auth = Ambient()
                self._retire(iam, storage, state, plan, save, keep=None)
            elif self.profile.hmac:
                auth = self._ensure_hmac(iam, storage, email, state, plan, save)
            else:
                auth = self._ensure_key_file(iam, storage, email, new_sa, state, plan, save)
        except ProvisionError:
            raise
        except _cloud_errors() as exc:
            from google.auth.exceptions import DefaultCredentialsError

            if isinstance(exc, DefaultCredentialsError):
                raise CloudRefused("no Google credentials found", "run `gcloud auth application-default login` "
                                   "or set GOOGLE_APPLICATION_CREDENTIALS") from None
            created = len([r for r in state.resources if r.created]) > before
            message = f"Google Cloud refused: {_one_line(exc)}"
            if created:
                raise PartialFailure(message, "state records what was created; re-run or `provision destroy`") from None
            raise CloudRefused(message, "check the admin credentials' permissions, the project and the names") from None
        if auth is None:
            return None
        return self.grant(auth)

    def grant(self, auth: Any) -> Grant:
        """The Grant for ``auth`` (shared/DESIGN.md "The Grant"; contract in provision/models.py).

        A key file or keyless grant names the JSON API host (``storage.googleapis.com``; the emulator's
        ``127.0.0.1:PORT`` with ``secure=False`` when one is used); an HMAC grant names the S3-interoperable endpoint
        ``storage.googleapis.com:443`` for Supervisely's ``minio`` provider.
        """
        common = {"provider": "gcs", "access": self.profile.access, "buckets": self.buckets,
                  "region": self.location, "auth": auth}
        if isinstance(auth, KeyPair):
            return Grant(storage_provider="minio", endpoint=INTEROP_ENDPOINT, endpoint_url=None, port=443,
                         secure=True, **common)
        endpoint = self.storage_endpoint()
        if endpoint:
            url = urlparse(endpoint)
            return Grant(storage_provider="google", endpoint=url.netloc, endpoint_url=endpoint, port=None,
                         secure=url.scheme == "https", **common)
        return Grant(storage_provider="google", endpoint="storage.googleapis.com", endpoint_url=None, port=None,
                     secure=True, **common)

    def _create(self, state: State, plan: Plan, save: Callable[[], None], resource: Resource, detail: str,
                call: Callable[..., Any], **kwargs: Any) -> Any:
        """`Plan.create` with GoogleAPICallError as the cloud's refusal."""
        from google.api_core.exceptions import GoogleAPICallError

        return plan.create(state, save, resource, detail, call, (GoogleAPICallError,), **kwargs)

    # ---- buckets ----------------------------------------------------------------------------------------------
    @staticmethod
    def _insecure(bucket: Any) -> list[str]:
        """What is not locked down on ``bucket``: uniform bucket-level access off, public access prevention not
        ``enforced`` (shared/REFERENCE.md §4)."""
        config = bucket.iam_configuration
        problems = []
        if not config.uniform_bucket_level_access_enabled:
            problems.append("uniform bucket-level access off")
        if config.public_access_prevention != "enforced":
            problems.append(f"public access prevention {config.public_access_prevention!r}")
        return problems

    def _harden(self, bucket: Any) -> None:
        """PATCH uniform bucket-level access on and public access prevention ``enforced``, guarded by the
        metageneration read."""
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        bucket.patch(if_metageneration_match=bucket.metageneration, retry=_retry(), timeout=TIMEOUT)

    def _ensure_bucket(self, storage: Any, name: str, state: State, plan: Plan, save: Callable[[], None]) -> None:
        from google.api_core.exceptions import Conflict, Forbidden

        try:
            bucket = storage.lookup_bucket(name, retry=_retry(), timeout=TIMEOUT)
        except Forbidden:
            raise CloudRefused(f"bucket {name!r} exists but belongs to someone else (or the admin credentials may "
                               "not see it)", "choose another bucket name") from None
        secure = "uniform bucket-level access, public access prevention enforced"
        if bucket is None:
            wanted = storage.bucket(name)
            wanted.iam_configuration.uniform_bucket_level_access_enabled = True
            wanted.iam_configuration.public_access_prevention = "enforced"
            try:
                bucket = self._create(state, plan, save, Resource(kind="bucket", name=name, created=True),
                                      f"in {self.location}, {secure}", storage.create_bucket, bucket_or_name=wanted,
                                      project=self.project, location=self.location, retry=_retry(), timeout=TIMEOUT)
            except Conflict:
                # The SDK retries a create whose answer was lost: a 409 then usually means our first attempt
                # worked. A bucket these credentials can see now (it was absent a moment ago) is ours: keep it
                # tracked; one they cannot see belongs to someone else.
                try:
                    bucket = storage.lookup_bucket(name, retry=_retry(), timeout=TIMEOUT)
                except Forbidden:
                    bucket = None
                if bucket is None:
                    raise CloudRefused(f"bucket name {name!r} is taken by another project",
                                       "Cloud Storage bucket names are global; choose another") from None
                state.record(Resource(kind="bucket", name=name, created=True))
                save()
            if bucket is None:  # dry run
                return
            missing = self._insecure(bucket)
            if missing:  # the service dropped settings from the insert body (the emulator does): set them now
                plan.write("update", "bucket", name, f"the service ignored them on create: {'; '.join(missing)} "
                           "→ set", self._harden, bucket=bucket)
            return
        record = state.find("bucket", name)
        ours = record is not None and record.created
        if record is None:
            where = f" (in {bucket.location}, not {self.location} as asked)" if (
                bucket.location or "").upper() != self.location.upper() else ""
            plan.note("adopt", "bucket", name, f"exists{where}; adopted (destroy never deletes it)")
            state.record(Resource(kind="bucket", name=name, created=False))
            save()
        missing = self._insecure(bucket)
        if not missing:
            plan.note("no change", "bucket", name, secure)
        elif ours or self.profile.harden:
            plan.write("update", "bucket", name, f"{'; '.join(missing)} → {secure}", self._harden, bucket=bucket)
        else:
            plan.note("no change", "bucket", name, f"not hardened: {'; '.join(missing)} (pass --harden to fix; "
                      "uniform access turns off object ACLs)")

    # ---- service account and bindings -------------------------------------------------------------------------
    def _ensure_service_account(self, iam: Any, state: State, plan: Plan,
                                save: Callable[[], None]) -> tuple[str, bool]:
        """Ensure the service account; returns (email, created by this run)."""
        from google.api_core.exceptions import NotFound

        email = self.service_account_email()
        try:
            iam.get_service_account(name=self.sa_path(email), retry=_iam_retry(), timeout=IAM_TIMEOUT)
            exists = True
        except NotFound:
            exists = False
        if exists:
            if state.find("service_account", email) is None:
                plan.note("adopt", "service_account", email, "exists; adopted (destroy never deletes it)")
                state.record(Resource(kind="service_account", name=email, created=False))
                save()
            else:
                plan.note("no change", "service_account", email, "service account")
            return email, False
        if self.profile.service_account and "@" in self.profile.service_account:
            raise CloudRefused(f"service account {email} does not exist",
                               "pass an id (--service-account provision-acme-ro) to create one in --project")
        buckets = ", ".join(self.buckets)
        self._create(state, plan, save, Resource(kind="service_account", name=email, created=True),
                     f"for {self.profile.access.value} on {buckets}", iam.create_service_account, request={
                         "name": f"projects/{self.project}", "account_id": self.service_account_id(),
                         "service_account": {
                             "display_name": f"provision {state.env}"[:100],
                             "description": f"provision: {self.profile.access.value} on {buckets}"[:256]}},
                     timeout=IAM_TIMEOUT)
        return email, True

    def _ensure_binding(self, storage: Any, name: str, email: str, new_sa: bool, state: State, plan: Plan,
                        save: Callable[[], None]) -> None:
        """Read-modify-write the bucket's IAM policy (version 3, etag-guarded) so that the service account holds
        exactly the roles of its access level there (`provision.policies.GCS_ROLES`); other members untouched."""
        from google.api_core.exceptions import BadRequest, Conflict, NotFound, PreconditionFailed

        member = f"serviceAccount:{email}"
        roles = " + ".join(r.removeprefix("roles/storage.") for r in GCS_ROLES[self.profile.access])
        detail = f"{member}: {roles}"
        bucket = storage.bucket(name)
        deadline = time.monotonic() + PROBE_TIMEOUT
        delay = 1.0
        attempts = 0
        while True:
            try:
                policy = bucket.get_iam_policy(requested_policy_version=3, retry=_retry(), timeout=TIMEOUT)
            except NotFound:
                if plan.dry_run:  # the bucket would be created first
                    plan.write("update", "bucket_binding", name, detail, lambda: None)
                    return
                raise
            current = [dict(b) for b in policy.bindings]
            had_member = any(member in b.get("members", ()) for b in current)
            merged, changed = merge_bindings(current, gcs_bindings(self.profile.access, member), drop_member=member)
            if not changed:
                plan.note("no change", "bucket_binding", name, detail)
                if state.find("bucket_binding", name) is None and not plan.dry_run:
                    state.record(Resource(kind="bucket_binding", name=name, created=False, parent=member))
                    save()
                return
            policy.bindings = merged
            policy.version = 3
            resource = Resource(kind="bucket_binding", name=name, created=True, parent=member)
            if not had_member and not plan.dry_run:
                state.record(resource)
                save()
            try:
                plan.write("update", "bucket_binding", name, detail if not had_member else f"now {detail}",
                           bucket.set_iam_policy, policy=policy, retry=None, timeout=TIMEOUT)
                return
            except (PreconditionFailed, Conflict):  # the policy changed since we read it: read again
                plan.changes.pop()
                attempts += 1
                if attempts >= POLICY_ATTEMPTS:
                    raise CloudRefused(f"the IAM policy of bucket {name!r} kept changing while it was updated",
                                       "re-run the command") from None
            except BadRequest as exc:
                plan.changes.pop()
                fresh = new_sa and "does not exist" in str(exc)
                if not fresh or time.monotonic() + delay > deadline:
                    if not had_member:
                        state.forget("bucket_binding", name)
                        save()
                    raise
                time.sleep(delay)  # IAM has not propagated the new service account yet
                delay = min(delay * 2, 8.0)

    # ---- credentials ------------------------------------------------------------------------------------------
    def _ensure_key_file(self, iam: Any, storage: Any, email: str, new_sa: bool, state: State, plan: Plan,
                         save: Callable[[], None]) -> KeyFile | None:
        """Keep the stored JSON key when it is live and its file is on disk; else (or with ``--rotate``) issue one,
        write it with `atomic_write` (0600) to `key_file_path`, and defer deleting the older ones."""
        from google.api_core.exceptions import FailedPrecondition
        from google.cloud.iam_admin_v1 import types

        from provision.files import atomic_write

        current = next((r for r in reversed(state.resources) if r.kind == "sa_key" and r.parent == email), None)
        path = key_file_path(state.env, current.name) if current is not None else None
        live: set[str] = set()
        if not new_sa and current is not None:
            listed = iam.list_service_account_keys(
                name=self.sa_path(email), key_types=[types.ListServiceAccountKeysRequest.KeyType.USER_MANAGED],
                retry=_iam_retry(), timeout=IAM_TIMEOUT)
            live = {k.name.rsplit("/", 1)[-1] for k in listed.keys}
        usable = (current is not None and path is not None and current.name in live and path.is_file()
                  and state.grant is not None and state.grant.auth == KeyFile(path=str(path)))
        if usable and not plan.rotate:
            assert current is not None
            plan.note("no change", "sa_key", current.name, f"of {email}, in {path}")
            self._retire(iam, storage, state, plan, save, keep=current.name)
            return KeyFile(path=str(path))
        where = state_dir() / "keys" / f"{state.env}-<key id>.json"
        if usable:
            detail = f"rotation: new JSON key in {where}; the old key and its file go once the new one works"
        elif current is not None:
            detail = f"the stored key is gone or its file is missing: new JSON key in {where} (0600)"
        else:
            detail = f"new JSON key, written to {where} (0600, never printed)"
        try:
            created = plan.write("issue", "sa_key", email, detail, iam.create_service_account_key, request={
                "name": self.sa_path(email),
                "private_key_type": types.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE,
                "key_algorithm": types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048}, timeout=IAM_TIMEOUT)
        except FailedPrecondition:
            raise CloudRefused(f"an organisation policy forbids keys for service account {email} "
                               "(constraints/iam.disableServiceAccountKeyCreation)",
                               "use --hmac (an HMAC key for the S3-interoperable endpoint) or --keyless (the VM's "
                               "attached service account)") from None
        if created is None:  # dry run
            return None
        key_id = created.name.rsplit("/", 1)[-1]
        plan.changes[-1].name = key_id
        state.record(Resource(kind="sa_key", name=key_id, created=True, parent=email))
        save()
        path = key_file_path(state.env, key_id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        atomic_write(path, bytes(created.private_key_data))
        auth = KeyFile(path=str(path))
        state.grant = self.grant(auth)
        save()
        self._retire(iam, storage, state, plan, save, keep=key_id)
        return auth

    def _ensure_hmac(self, iam: Any, storage: Any, email: str, state: State, plan: Plan,
                     save: Callable[[], None]) -> KeyPair | None:
        """Keep the stored HMAC key while it is ACTIVE; else (or with ``--rotate``) create one for the service
        account (the secret is returned once and goes straight into state) and defer retiring the older ones."""
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.hmac_key import HMACKeyMetadata

        stored = state.grant.auth if state.grant is not None and isinstance(state.grant.auth, KeyPair) else None
        if stored is not None and state.find("hmac_key", stored.access_key) is not None:
            meta = HMACKeyMetadata(storage, access_id=stored.access_key, project_id=self.project)
            try:
                meta.reload(retry=_retry(), timeout=TIMEOUT)
                active = meta.state == HMACKeyMetadata.ACTIVE_STATE and meta.service_account_email == email
            except NotFound:
                active = False
            if active and not plan.rotate:
                plan.note("no change", "hmac_key", stored.access_key, f"of {email}")
                self._retire(iam, storage, state, plan, save, keep=stored.access_key)
                return stored
        detail = "rotation: new HMAC key" if stored is not None and plan.rotate else (
            "new HMAC key for the S3-interoperable endpoint (secret stored in state, masked in output)")
        created = plan.write("issue", "hmac_key", email, detail, storage.create_hmac_key, service_account_email=email,
                             project_id=self.project, timeout=TIMEOUT)
        if created is None:  # dry run
            return None
        meta, secret = created
        plan.changes[-1].name = meta.access_id
        key = KeyPair(access_key=meta.access_id, secret_key=secret)
        state.record(Resource(kind="hmac_key", name=meta.access_id, created=True, parent=email))
        state.grant = self.grant(key)  # the secret exists only in this response: store it before anything else
        save()
        self._retire(iam, storage, state, plan, save, keep=meta.access_id)
        return key

    def _retire(self, iam: Any, storage: Any, state: State, plan: Plan, save: Callable[[], None],
                keep: str | None) -> None:
        """Defer deleting every key `provision` issued other than ``keep`` (a rotation's old key, or the key of
        another credential kind): it goes only after the new credential is verified and the files re-rendered."""
        for r in [r for r in state.resources if r.kind in ("sa_key", "hmac_key") and r.created and r.name != keep]:
            plan.defer("delete", r.kind, r.name, "the old key, once the new credential works and the rendered "
                       "files hold it", self._delete_key, iam=iam, storage=storage, state=state, save=save,
                       resource=r, plan=None)

    def _delete_key(self, iam: Any, storage: Any, state: State, save: Callable[[], None], resource: Resource,
                    plan: Plan | None) -> None:
        """Delete one issued key (an HMAC key is deactivated first, as Cloud Storage requires); one already gone
        counts as deleted. Forgets it in state and removes its key file."""
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.hmac_key import HMACKeyMetadata

        def run(action: str, detail: str, call: Callable[..., Any], **kwargs: Any) -> Any:
            if plan is None:
                return call(**kwargs)
            return plan.write(action, resource.kind, resource.name, detail, call, **kwargs)

        try:
            if resource.kind == "sa_key":
                run("delete", f"of {resource.parent}", iam.delete_service_account_key,
                    request={"name": f"{self.sa_path(resource.parent)}/keys/{resource.name}"}, retry=_iam_retry(),
                    timeout=IAM_TIMEOUT)
            else:
                meta = HMACKeyMetadata(storage, access_id=resource.name, project_id=self.project)
                meta.reload(retry=_retry(), timeout=TIMEOUT)
                if meta.state == HMACKeyMetadata.ACTIVE_STATE:
                    meta.state = HMACKeyMetadata.INACTIVE_STATE
                    run("update", "deactivate (required before delete)", meta.update, retry=None, timeout=TIMEOUT)
                run("delete", f"of {resource.parent}", meta.delete, retry=_retry(), timeout=TIMEOUT)
        except NotFound:
            if plan is not None:
                plan.note("no change", resource.kind, resource.name, "already gone")
        if plan is not None and plan.dry_run:
            return
        state.forget(resource.kind, resource.name)
        if resource.kind == "sa_key":
            key_file_path(state.env, resource.name).unlink(missing_ok=True)
        save()

    # ---- destroy ----------------------------------------------------------------------------------------------
    def destroy(self, state: State, plan: Plan, save: Callable[[], None], delete_data: bool) -> list[str]:
        """Delete what `provision` created, newest first: keys, the bindings it added (only its member is removed,
        read-modify-write with the etag), the service account, empty buckets. Adopted resources are only forgotten.

        Returns:
            Names of adopted resources left in place.

        Raises:
            BadInput: a bucket `provision` created still holds objects and ``delete_data`` is False (checked
                before anything is deleted).
            PartialFailure: Google refused a deletion; state keeps what still exists.
        """
        storage = self.storage()
        ours = [r for r in reversed(state.resources) if r.created]
        errors = _cloud_errors()
        try:
            if not delete_data:
                for r in ours:
                    if r.kind == "bucket" and self._bucket_has_objects(storage, r.name):
                        raise BadInput(f"bucket {r.name!r} (created by provision) still holds objects",
                                       "pass --delete-data to delete them with it, or empty it first")
        except errors as exc:
            raise CloudRefused(f"Google Cloud refused: {_one_line(exc)}", "check the admin credentials") from None
        kept = [f"{r.kind} {r.name}" for r in state.resources if not r.created]
        iam = self.iam() if any(r.kind in ("service_account", "sa_key") for r in ours) else None
        try:
            for r in ours:
                self._delete(iam, storage, r, state, plan, save)
        except errors as exc:
            raise PartialFailure(f"Google Cloud refused a deletion: {_one_line(exc)}",
                                 "state keeps what still exists; fix the cause and run destroy again") from None
        return kept

    def _bucket_has_objects(self, storage: Any, name: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            return any(True for _ in storage.list_blobs(name, max_results=1, versions=True, retry=_retry(),
                                                        timeout=TIMEOUT))
        except NotFound:
            return False

    def _delete(self, iam: Any, storage: Any, r: Resource, state: State, plan: Plan,
                save: Callable[[], None]) -> None:
        """Delete one created resource and forget it; one already gone counts as deleted."""
        from google.api_core.exceptions import NotFound

        if r.kind in ("sa_key", "hmac_key"):
            self._delete_key(iam, storage, state, save, r, plan)
            return
        try:
            if r.kind == "bucket_binding":
                self._unbind(storage, r.name, r.parent or "", plan)
            elif r.kind == "service_account":
                plan.write("delete", r.kind, r.name, "service account", iam.delete_service_account,
                           request={"name": self.sa_path(r.name)}, retry=_iam_retry(), timeout=IAM_TIMEOUT)
            elif r.kind == "bucket":
                self._empty_bucket(storage, r.name, plan)
                plan.write("delete", r.kind, r.name, "bucket", storage.bucket(r.name).delete, retry=_retry(),
                           timeout=TIMEOUT)
        except NotFound:
            plan.note("no change", r.kind, r.name, "already gone")
        if not plan.dry_run:
            state.forget(r.kind, r.name)
            save()

    def _unbind(self, storage: Any, name: str, member: str, plan: Plan) -> None:
        """Remove ``member`` from the bucket's unconditional bindings, leaving every other member (read-modify-write
        with the etag, re-read when it changed under us)."""
        from google.api_core.exceptions import Conflict, PreconditionFailed

        bucket = storage.bucket(name)
        for _ in range(POLICY_ATTEMPTS):
            policy = bucket.get_iam_policy(requested_policy_version=3, retry=_retry(), timeout=TIMEOUT)
            merged, changed = merge_bindings([dict(b) for b in policy.bindings], [], drop_member=member)
            if not changed:
                plan.note("no change", "bucket_binding", name, f"{member} already removed")
                return
            policy.bindings = merged
            policy.version = 3
            try:
                plan.write("delete", "bucket_binding", name, f"remove {member}", bucket.set_iam_policy,
                           policy=policy, retry=None, timeout=TIMEOUT)
                return
            except (PreconditionFailed, Conflict):
                plan.changes.pop()
        raise CloudRefused(f"the IAM policy of bucket {name!r} kept changing while it was updated", "run destroy again")

    def _empty_bucket(self, storage: Any, name: str, plan: Plan) -> None:
        """Delete every object (every generation) in ``name`` (only reached with --delete-data or when empty)."""
        page: list[Any] = []

        def delete(blobs: list[Any]) -> None:
            for blob in blobs:
                blob.delete(retry=_retry(), timeout=TIMEOUT)

        for blob in storage.list_blobs(name, versions=True, retry=_retry(), timeout=TIMEOUT):
            page.append(storage.bucket(name).blob(blob.name, generation=blob.generation))
            if len(page) == 1000:
                plan.write("delete", "objects", name, f"{len(page)} objects", delete, blobs=page)
                page = []
        if page:
            plan.write("delete", "objects", name, f"{len(page)} objects", delete, blobs=page)

    # ---- data -------------------------------------------------------------------------------------------------
    def objects(self, state: State, bucket: str, write: bool) -> GcsObjects:
        """A `GcsObjects` store for ``bucket``: the grant's key file when it can do the job (reads; writes only
        with a ``full`` grant), else the admin credentials (an HMAC key works only on the XML API; the sandbox is
        anonymous)."""
        creds = None
        grant = state.grant
        if (not self.profile.sandbox and grant is not None and isinstance(grant.auth, KeyFile)
                and (not write or grant.access == Access.full) and Path(grant.auth.path).is_file()):
            creds = self._key_credentials(grant.auth.path)
        return GcsObjects(self.storage(creds), bucket)

    @staticmethod
    def _key_credentials(path: str) -> Any:
        """Credentials from the grant's key file.

        Raises:
            BadInput: the file is missing or is not a service-account key.
        """
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(path, scopes=[CLOUD_SCOPE])
        except (OSError, ValueError) as exc:
            raise BadInput(f"the key file {path} cannot be used ({type(exc).__name__}: {_one_line(exc)})",
                           "re-run `provision gcs --rotate` for this environment to issue a new key") from None

    # ---- verify -----------------------------------------------------------------------------------------------
    def verify(self, state: State) -> list[VerifyRow]:
        """Probe the stored credential against its grant, with objects the admin credentials create and remove.

        Key file (JSON API): objects.list, objects.get, buckets.get allowed; objects.create and objects.delete
        allowed only for ``full``; buckets.setIamPolicy (re-sending the current policy, so an allowed call changes
        nothing) and buckets.list denied; objects.list/get/create on another bucket (``provision-verify-<hex>``,
        made for the probe) denied. HMAC key: the same data probes through the S3-interoperable endpoint.

        Returns:
            One row per probe.

        Raises:
            BadInput: the sandbox (its emulator enforces no IAM: nothing true to probe); a keyless grant (the
                identity lives on the VM); an HMAC grant while Cloud Storage is an emulator (no S3 interoperability).
            CloudRefused: the probes could not be set up with the admin credentials.
        """
        grant = state.grant
        if self.profile.sandbox:
            raise BadInput(f"nothing true to probe: {SANDBOX_NOTE}, and its emulator enforces no permission",
                           "verify against a real project")
        if grant is None or isinstance(grant.auth, Ambient):
            raise BadInput("this grant has no key to probe (--keyless: the VM's attached service account)",
                           "verify from the VM that carries the service account")
        if isinstance(grant.auth, KeyPair) and self.storage_endpoint():
            raise BadInput(f"an HMAC key works on the S3-interoperable endpoint, which {self.storage_endpoint()} "
                           "(an emulator) does not serve", "verify against a real project")
        admin = self.storage()
        full = grant.access == Access.full
        token = uuid.uuid4().hex[:10]
        probe = f".provision-verify/{token}"
        other = f"provision-verify-{token}"
        rows: list[VerifyRow] = []
        errors = _cloud_errors()
        try:
            fresh = admin.bucket(other)
            fresh.iam_configuration.uniform_bucket_level_access_enabled = True
            fresh.iam_configuration.public_access_prevention = "enforced"
            admin.create_bucket(fresh, project=self.project, location=self.location, retry=_retry(), timeout=TIMEOUT)
            for bucket in grant.buckets:
                admin.bucket(bucket).blob(probe).upload_from_string(b"provision verify", retry=_retry(),
                                                                    timeout=TIMEOUT)
            if isinstance(grant.auth, KeyFile):
                self._probe_key_file(grant, admin, rows, full, probe, other)
            else:
                self._probe_hmac(grant, rows, full, probe, other)
        except errors as exc:
            raise CloudRefused(f"verify could not set up its probes: {_one_line(exc)}",
                               "check the admin credentials") from None
        finally:
            self._cleanup(admin, grant.buckets, probe, other)
        return rows

    def _probe_key_file(self, grant: Grant, admin: Any, rows: list[VerifyRow], full: bool, probe: str,
                        other: str) -> None:
        from google.api_core.exceptions import GoogleAPICallError
        from google.auth.exceptions import GoogleAuthError

        assert isinstance(grant.auth, KeyFile)
        user = self.storage(self._key_credentials(grant.auth.path))

        def attempt(operation: str, target: str, allowed: bool, call: Callable[..., Any], **kwargs: Any) -> None:
            try:
                call(**kwargs)
                actual = "allow"
            except GoogleAPICallError as exc:
                actual = "deny" if exc.code in _DENIED else f"error: {exc.code}"
            except GoogleAuthError as exc:
                actual = f"error: {type(exc).__name__}"
            rows.append(VerifyRow(operation=operation, target=target, expected="allow" if allowed else "deny",
                                  actual=actual))

        def listing(name: str) -> None:
            list(user.list_blobs(name, max_results=1, retry=None, timeout=TIMEOUT))

        for name in grant.buckets:
            mine = user.bucket(name)
            attempt("objects.list", name, True, listing, name=name)
            attempt("objects.get", f"{name}/{probe}", True, mine.blob(probe).download_as_bytes, retry=None,
                    timeout=TIMEOUT)
            attempt("buckets.get", name, True, user.get_bucket, bucket_or_name=name, retry=None, timeout=TIMEOUT)
            attempt("objects.create", f"{name}/{probe}.w", full, mine.blob(f"{probe}.w").upload_from_string,
                    data=b"x", retry=None, timeout=TIMEOUT)
            attempt("objects.delete", f"{name}/{probe}", full, mine.blob(probe).delete, retry=None, timeout=TIMEOUT)
            policy = admin.bucket(name).get_iam_policy(requested_policy_version=3, retry=_retry(), timeout=TIMEOUT)
            attempt("buckets.setIamPolicy", name, False, mine.set_iam_policy, policy=policy, retry=None,
                    timeout=TIMEOUT)
        attempt("buckets.list", f"project {self.project}", False,
                lambda: list(user.list_buckets(project=self.project, max_results=1, retry=None, timeout=TIMEOUT)))
        another = user.bucket(other)
        target = f"{other} (another bucket)"
        attempt("objects.list", target, False, listing, name=other)
        attempt("objects.get", target, False, another.blob(probe).download_as_bytes, retry=None, timeout=TIMEOUT)
        attempt("objects.create", target, False, another.blob("x").upload_from_string, data=b"x", retry=None,
                timeout=TIMEOUT)

    def _probe_hmac(self, grant: Grant, rows: list[VerifyRow], full: bool, probe: str, other: str) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        assert isinstance(grant.auth, KeyPair)
        s3 = boto3.client("s3", endpoint_url=f"https://{grant.endpoint}:{grant.port or 443}", region_name="auto",
                          aws_access_key_id=grant.auth.access_key, aws_secret_access_key=grant.auth.secret_key,
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                        retries={"mode": "standard", "max_attempts": 2}))

        def attempt(operation: str, target: str, allowed: bool, call: Callable[..., Any], **kwargs: Any) -> None:
            try:
                call(**kwargs)
                actual = "allow"
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                actual = "deny" if status in _DENIED or code in ("AccessDenied", "Forbidden") else f"error: {code}"
            except BotoCoreError as exc:
                actual = f"error: {type(exc).__name__}"
            rows.append(VerifyRow(operation=operation, target=target, expected="allow" if allowed else "deny",
                                  actual=actual))

        for name in grant.buckets:
            attempt("ListObjectsV2", name, True, s3.list_objects_v2, Bucket=name, MaxKeys=1)
            attempt("GetObject", f"{name}/{probe}", True, s3.get_object, Bucket=name, Key=probe)
            attempt("PutObject", f"{name}/{probe}.w", full, s3.put_object, Bucket=name, Key=f"{probe}.w", Body=b"x")
            attempt("DeleteObject", f"{name}/{probe}", full, s3.delete_object, Bucket=name, Key=probe)
        attempt("ListBuckets", "*", False, s3.list_buckets)
        attempt("ListObjectsV2", f"{other} (another bucket)", False, s3.list_objects_v2, Bucket=other)
        attempt("PutObject", f"{other} (another bucket)", False, s3.put_object, Bucket=other, Key="x", Body=b"x")

    def _cleanup(self, admin: Any, buckets: list[str], probe: str, other: str) -> None:
        """Remove verify's probe objects and temporary bucket with the admin credentials.

        Raises:
            ProvisionError: they could not be removed (names what to delete by hand).
        """
        from google.api_core.exceptions import NotFound

        try:
            for name in buckets:
                for key in (probe, f"{probe}.w"):
                    try:
                        admin.bucket(name).blob(key).delete(retry=_retry(), timeout=TIMEOUT)
                    except NotFound:
                        pass
            try:
                for blob in admin.list_blobs(other, retry=_retry(), timeout=TIMEOUT):
                    blob.delete(retry=_retry(), timeout=TIMEOUT)
                admin.bucket(other).delete(retry=_retry(), timeout=TIMEOUT)
            except NotFound:
                pass
        except _cloud_errors() as exc:
            raise ProvisionError(f"verify could not remove its probe objects: {_one_line(exc)}",
                                 f"delete bucket {other} and objects {probe}* by hand") from None


class GcsObjects:
    """`provision.objects.ObjectStore` over one google-cloud-storage client and one bucket.

    Every method raises `provision.errors.CloudRefused` (operation, bucket, key, Google's message) for a refused
    request or an unreachable endpoint, after the SDK's own retries (`RETRY_SECONDS`).

    ``ObjectInfo.etag`` is the hex MD5 of the object (Cloud Storage's ``md5Hash``, decoded), or "" for objects
    without one (composite objects).

    Args:
        client: a ``google.cloud.storage.Client``.
        bucket: the bucket name.
    """

    url_scheme = "google"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._bucket = client.bucket(bucket)

    @refusing("Cloud Storage", "ListObjects", _cloud_errors)
    def list(self, prefix: str = "") -> Iterator[Any]:
        """Objects under ``prefix`` in key order, fetched a page at a time."""
        from provision.objects import ObjectInfo

        for blob in self.client.list_blobs(self.bucket, prefix=prefix or None, retry=_retry(), timeout=TIMEOUT):
            yield ObjectInfo(blob.name, int(blob.size or 0), _md5_hex(blob.md5_hash))

    @refusing("Cloud Storage", "GetObject", _cloud_errors)
    def head(self, key: str) -> Any:
        """The object's size and MD5, or None when it does not exist."""
        from provision.objects import ObjectInfo

        blob = self._bucket.get_blob(key, retry=_retry(), timeout=TIMEOUT)
        if blob is None:
            return None
        return ObjectInfo(key, int(blob.size or 0), _md5_hex(blob.md5_hash))

    @refusing("Cloud Storage", "GetObjectMedia", _cloud_errors)
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (b"" past the end)."""
        if length <= 0:
            return b""
        from google.api_core.exceptions import RequestRangeNotSatisfiable

        try:
            data = self._bucket.blob(key).download_as_bytes(start=start, end=start + length - 1, checksum=None,
                                                            retry=_retry(), timeout=TIMEOUT)
        except RequestRangeNotSatisfiable:  # empty object, or start past the end
            return b""
        return bytes(data[:length])

    @refusing("Cloud Storage", "GetObjectMedia", _cloud_errors)
    def read(self, key: str) -> bytes:
        """The whole object."""
        return bytes(self._bucket.blob(key).download_as_bytes(retry=_retry(), timeout=TIMEOUT))

    @refusing("Cloud Storage", "InsertObject", _cloud_errors)
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace ``key``."""
        self._bucket.blob(key).upload_from_string(data, content_type=content_type or _guess_type(key),
                                                  retry=_retry(), timeout=TIMEOUT)

    @refusing("Cloud Storage", "InsertObject", _cloud_errors)
    def put_file(self, key: str, path: Any) -> None:
        """Upload a local file (the SDK switches to a resumable upload above 8 MiB)."""
        self._bucket.blob(key).upload_from_filename(str(path), content_type=_guess_type(key), retry=_retry(),
                                                    timeout=TIMEOUT)

    def transfer(self, concurrency: int) -> GcsTransfer:
        """A `GcsTransfer` into this bucket (``provision migrate``)."""
        return GcsTransfer(self, concurrency)


def _guess_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class GcsTransfer:
    """`provision.transfer.Transfer` for Cloud Storage: one upload per file from a thread pool (the SDK uses a
    resumable upload above 8 MiB, and retries with our `RETRY_SECONDS` budget); the checksum is the hex MD5 of the
    content, which is what `GcsObjects.list` reports for an object uploaded whole.

    Args:
        store: the bucket's `GcsObjects` (with a credential that may write).
        concurrency: parallel uploads wanted; capped at 10, the connection pool google-cloud-storage's HTTP session
            keeps per host (more threads would open and drop a connection per request).
    """

    POOL = 10

    def __init__(self, store: GcsObjects, concurrency: int) -> None:
        self.store = store
        self.concurrency = max(1, min(concurrency, self.POOL))
        self.cloud_errors = _cloud_errors()
        self.checksum_kind = "gcs-md5"

    def checksum(self, path: Path, size: int) -> str:
        """Hex MD5 of the file, read 1 MiB at a time."""
        from provision.transfer import READ_SIZE

        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            while chunk := fh.read(READ_SIZE):
                digest.update(chunk)
        return digest.hexdigest()

    def upload(self, jobs: Iterable[Any], on_bytes: Callable[[int], None],
               on_done: Callable[[Any, BaseException | None, str | None], None]) -> None:
        """Upload every job in parallel; ``on_done`` gets the object's MD5 (hex) from the upload's response."""
        from provision.transfer import run_bounded

        def put(job: Any) -> None:
            try:
                blob = self.store._bucket.blob(job.key)
                blob.upload_from_filename(str(job.path), content_type=_guess_type(job.key), retry=_retry(),
                                          timeout=TIMEOUT)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported per file
                on_done(job, exc, None)
            else:
                on_bytes(job.size)
                on_done(job, None, _md5_hex(blob.md5_hash) or None)

        run_bounded(jobs, put, self.concurrency, "provision-gcs-put")
