"""`GcsProvider`: Cloud Storage buckets with uniform bucket-level access and public access prevention, a service
account bound to exactly those buckets, and one credential (a JSON key file, an HMAC key, or none with
``--keyless``), on the `provision.providers.base.BaseProvider` skeleton.

In the sandbox, whose GCS emulator has no IAM at all, only ``--keyless`` works and the service account, bindings
and keys are reported as skipped. Every change goes through the `provision.ledger.Plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from provision.errors import ProvisionError
from provision.ledger import Plan
from provision.models import Ambient, Grant, KeyFile, KeyPair, Resource
from provision.names import check_gcs_bucket, resolve_buckets
from provision.profiles import Profile
from provision.providers.base import BaseProvider, VerifyRow, grant_credential
from provision.providers.gcp import sdk
from provision.providers.gcp.bindings import ensure_binding, unbind
from provision.providers.gcp.buckets import check_bucket_marks, delete_bucket, ensure_bucket, holds_objects
from provision.providers.gcp.credentials import (
    KEY_KINDS,
    check_service_account_mark,
    delete_key,
    ensure_hmac,
    ensure_key_file,
    ensure_service_account,
    retire,
    sa_path,
)
from provision.providers.gcp.intents import INTENT_KINDS, settle, settle_all
from provision.providers.gcp.marks import GcsMarks, hand_over, stays
from provision.providers.gcp.objects import GcsObjects
from provision.providers.gcp.options import SANDBOX_NOTE, GcsOptions
from provision.providers.gcp.verify import verify as verify_grant

INTEROP_ENDPOINT = "storage.googleapis.com"
"""Cloud Storage's S3-interoperable (XML API) host, where HMAC keys work (Supervisely's ``minio`` provider);
https://cloud.google.com/storage/docs/interoperability."""


class GcsProvider(BaseProvider):
    """Provision Cloud Storage buckets and a least-privilege service account for them.

    Args:
        profile: the validated inputs (``provider == "gcs"``). No I/O happens here.

    Attributes:
        buckets: the checked bucket names. options: the Cloud Storage fields of the profile.
        account_id, email: the service account. clients: the SDK seam.

    Raises:
        BadInput: from `check`: invalid bucket / service-account / project names, conflicting options, a key file
            or HMAC key asked of the sandbox.
    """

    name = "gcs"
    service = "Google Cloud"
    bucket_kinds = ("bucket",)

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self.options = GcsOptions.of(profile)
        self.buckets, self.account_id, self.email = self.check()
        self.clients = sdk.GcsClients(profile.sandbox, self.options.project)

    # ---- validation (pure, before any call) -------------------------------------------------------------------
    def check(self) -> tuple[list[str], str, str]:
        """Validate the profile for Cloud Storage (it is not changed).

        Rules: bucket names (`provision.names.check_gcs_bucket`; Supervisely's pair for ``--prefix``), then
        `GcsOptions.check` (credential kind, location, sandbox, project, service account).

        Returns:
            (bucket names, service-account id, service-account email).

        Raises:
            BadInput: see the class docstring.
        """
        p = self.profile
        buckets = resolve_buckets(p.buckets, p.prefix, check_gcs_bucket, "bucket")
        self.options.check(p.sandbox or sdk.iamless_emulator())
        account_id = self.options.account_id(p.prefix or (p.buckets[0] if p.buckets else "grant"), p.access)
        return buckets, account_id, self.options.account_email(account_id)

    @property
    def project(self) -> str:
        """The project id: ``--project``, or in the sandbox the sandbox's project."""
        return self.clients.project

    @property
    def location(self) -> str:
        """``--location`` or the default (``US``)."""
        return self.options.bucket_location

    # ---- the SDK's errors ---------------------------------------------------------------------------------------
    def refused_errors(self) -> tuple[type[BaseException], ...]:
        """Google answered with an error (`provision.providers.gcp.sdk.refused_errors`)."""
        return sdk.refused_errors()

    def unreachable_errors(self) -> tuple[type[BaseException], ...]:
        """No answer from Google (`provision.providers.gcp.sdk.unreachable_errors`)."""
        return sdk.unreachable_errors()

    def describe(self, exc: BaseException) -> str:
        """One line for an SDK error (`provision.providers.gcp.sdk.describe`)."""
        return sdk.describe(exc)

    def missing_credentials(self, exc: BaseException) -> ProvisionError | None:
        """``no Google credentials found`` for google-auth's DefaultCredentialsError, else None."""
        from google.auth.exceptions import DefaultCredentialsError

        return sdk.no_credentials() if isinstance(exc, DefaultCredentialsError) else None

    def _api_refused(self) -> tuple[type[BaseException], ...]:
        """The answers that mean a create did not happen (its record is forgotten again)."""
        from google.api_core.exceptions import GoogleAPICallError

        return (GoogleAPICallError,)

    # ---- apply ------------------------------------------------------------------------------------------------
    def ensure(self, state: Any, plan: Plan) -> Grant | None:
        """Ensure buckets, service account, bucket bindings and the credential.

        ``--rotate`` with ``--keyless`` has nothing to rotate and says so.

        Returns:
            The Grant; None in a dry run when a new key would be issued.

        Raises:
            CloudRefused: a bucket name taken by another project, an account given by email that does not exist,
                an organisation policy that forbids service-account keys (names ``--hmac`` and ``--keyless``).
                The SDK's errors otherwise (mapped by `BaseProvider.apply`).
        """
        o = self.options
        if plan.rotate and o.keyless:
            plan.note("no change", "credential", "-", "--rotate: a keyless grant has no key to rotate")
        storage = self.clients.storage()
        # every owner mark is read and checked before the first change: a refusal leaves no trace
        check_bucket_marks(storage, self.buckets, state, self.profile.adopt)
        if not self.clients.emulated:  # an IAM-less emulator (sandbox, STORAGE_EMULATOR_HOST) has no accounts
            check_service_account_mark(self.clients, self.email, o.by_email, state, self.profile.adopt)
        for bucket in self.buckets:
            ensure_bucket(storage, bucket, self.project, self.location, o.harden, state, plan, self._api_refused())
        if self.clients.emulated:
            for kind in ("service_account", "bucket_binding"):
                plan.note("no change", kind, "-", f"skipped: {SANDBOX_NOTE}")
            return self.grant(Ambient())
        description = f"{self.profile.access.value} on {', '.join(self.buckets)}"
        new_sa = ensure_service_account(self.clients, self.email, self.account_id, o.by_email, description, state,
                                        plan, self._api_refused())
        for bucket in self.buckets:
            ensure_binding(storage, bucket, self.email, self.profile.access, new_sa, state, plan)
        settle_all(self.clients, o.by_email, state, plan)  # intents a killed run left behind
        auth: Any
        if o.keyless:
            plan.note("no change", "credential", self.email, "keyless: attach this service account to the VM "
                      "that runs the platform; no key is issued")
            auth = Ambient()
            retire(self.clients, o.by_email, state, plan, keep=None)
        elif o.hmac:
            auth = ensure_hmac(self.clients, self.email, o.by_email, state, plan, self.grant)
        else:
            auth = ensure_key_file(self.clients, self.email, o.by_email, new_sa, state, plan, self.grant)
        return None if auth is None else self.grant(auth)

    def grant(self, auth: Any) -> Grant:
        """The Grant for ``auth`` (contract in `provision.models.Grant`).

        A key file or keyless grant names the JSON API host (``storage.googleapis.com``; the emulator's
        ``127.0.0.1:PORT`` with ``secure=False`` when one is used); an HMAC grant names the S3-interoperable endpoint
        ``storage.googleapis.com:443`` for Supervisely's ``minio`` provider.
        """
        common = {"provider": "gcs", "access": self.profile.access, "buckets": self.buckets,
                  "region": self.location, "auth": auth}
        if isinstance(auth, KeyPair):
            return Grant(storage_provider="minio", endpoint=INTEROP_ENDPOINT, endpoint_url=None, port=443,
                         secure=True, **common)
        endpoint = self.clients.storage_endpoint()
        if endpoint:
            url = urlparse(endpoint)
            return Grant(storage_provider="google", endpoint=url.netloc, endpoint_url=endpoint, port=None,
                         secure=url.scheme == "https", **common)
        return Grant(storage_provider="google", endpoint="storage.googleapis.com", endpoint_url=None, port=None,
                     secure=True, **common)

    # ---- destroy ----------------------------------------------------------------------------------------------
    def holds_objects(self, state: Any, resource: Resource) -> bool:
        """True when bucket ``resource`` holds any object (any generation); False when it is empty or gone, or
        when it is handed over to another state that shares it rather than deleted
        (`provision.providers.gcp.marks.stays`)."""
        if stays(GcsMarks(self.clients.storage()), state, resource.kind, resource.name):
            return False
        return holds_objects(self.clients.storage(), resource.name)

    def markers(self) -> GcsMarks:
        """The owner-mark reader/writer of buckets and service accounts (`provision.providers.gcp.marks.GcsMarks`);
        no service accounts on an IAM-less emulator."""
        return GcsMarks(self.clients.storage(), None if self.clients.emulated else self.clients,
                        self.options.by_email)

    def mark_store(self, state: Any) -> GcsMarks:
        """`BaseProvider.mark_store`: bucket labels and service-account descriptions (`markers`)."""
        return self.markers()

    def delete_resource(self, state: Any, resource: Resource, plan: Plan, delete_data: bool) -> None:
        """Delete one created resource: a key (an HMAC key deactivated first; a key file removed with its key),
        our member of a bucket's policy (only it; read-modify-write with the etag), the service account, a bucket
        with its objects. One already gone is reported as such. A bucket or service account another state shares
        (``--adopt``) is handed over to it instead (`provision.providers.gcp.marks.hand_over`), and the bindings
        of such an account stay with it."""
        from google.api_core.exceptions import NotFound

        r = resource
        kind = next((k for k, intent in INTENT_KINDS.items() if intent == r.kind), None)
        if kind is not None:
            settle(self.clients, self.options.by_email, state, plan, kind, r.name)
            return
        if r.kind in KEY_KINDS:
            delete_key(self.clients, self.options.by_email, state, r, plan, report=True)
            return
        markers = self.markers()
        try:
            if hand_over(plan, state, markers, r.kind, r.name):
                return
            if r.kind == "bucket_binding":
                account = (r.parent or "").removeprefix("serviceAccount:")
                if stays(markers, state, "service_account", account):
                    plan.note("no change", r.kind, r.name, f"{r.parent} stays: its service account is handed "
                              "over to the environment that shares it")
                    return
                unbind(self.clients.storage(), r.name, r.parent or "", plan)
            elif r.kind == "service_account":
                plan.delete(r.kind, r.name, "service account", self.clients.iam().delete_service_account,
                            request={"name": sa_path(self.project, r.name, self.options.by_email)},
                            retry=sdk.iam_retry(), timeout=sdk.IAM_TIMEOUT)
            elif r.kind == "bucket":
                delete_bucket(self.clients.storage(), r.name, plan)
        except NotFound:
            plan.note("no change", r.kind, r.name, "already gone")

    # ---- verify and data ----------------------------------------------------------------------------------------
    def verify(self, state: Any) -> list[VerifyRow]:
        """Probe the stored credential against its grant (`provision.providers.gcp.verify.verify`)."""
        return verify_grant(self.clients, state.grant, self.location)

    def objects(self, state: Any, bucket: str, write: bool) -> GcsObjects:
        """A `GcsObjects` store for ``bucket``: the grant's key file when it can do the job (`grant_credential`)
        and is on disk, else the admin credentials (an HMAC key works only on the XML API; the sandbox is
        anonymous)."""
        credential = None if self.clients.emulated else grant_credential(state.grant, write)
        creds = None
        if isinstance(credential, KeyFile) and Path(credential.path).is_file():
            creds = self.clients.key_credentials(credential.path)
        return GcsObjects(self.clients.storage(creds), bucket)
