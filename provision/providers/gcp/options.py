"""The Cloud Storage fields of a profile and their rules: pure, no SDK, no I/O (the profile loader composes them).

Rules are checked by `GcsOptions.check`, in the order the CLI reports them, rather than by field validators: a
bad combination (``--hmac`` with ``--keyless``, a key asked of the sandbox) depends on more than one field and on
whether the run targets the sandbox.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from provision.errors import BadInput
from provision.models import Access
from provision.names import check_gcs_location, check_project, check_service_account_id, service_account_email_id

SANDBOX_NOTE = "the sandbox has no IAM: service accounts, bindings and keys need a real project"
"""Said wherever the sandbox cannot do what a real project does (its GCS emulator has no IAM)."""
DEFAULT_LOCATION = "US"
"""Bucket location when ``--location`` is not given (Cloud Storage's own default,
https://cloud.google.com/storage/docs/locations)."""
_SANDBOX_PROJECT = re.compile(r"^[a-z][-a-z0-9]{0,29}$")


class GcsFields(BaseModel):
    """The profile fields only ``provision gcs`` reads (`provision.profiles.Profile` is composed of these and the
    other providers' fields).

    Attributes:
        project: the GCP project id (required outside the sandbox; in the sandbox only a label).
        location: the bucket location, or None for `DEFAULT_LOCATION`.
        service_account: a service-account id, or the email of an existing account (adopted, never created);
            None for ``provision-<prefix or first bucket>-<ro|rw>``.
        hmac: issue an HMAC key for the S3-interoperable endpoint instead of a JSON key file.
        keyless: issue no key: the VM's attached service account carries the grant.
        harden: turn uniform bucket-level access on and enforce public access prevention on adopted buckets.
    """

    model_config = ConfigDict(extra="forbid")

    project: str | None = None
    location: str | None = None
    service_account: str | None = None
    hmac: bool = False
    keyless: bool = False
    harden: bool = False


class GcsOptions(GcsFields):
    """The Cloud Storage options (`GcsFields`), with their rules (`check`) and defaults."""

    @classmethod
    def of(cls, profile: Any) -> GcsOptions:
        """The Cloud Storage fields of ``profile`` (a `provision.profiles.Profile`, or anything with those
        attributes)."""
        return cls.model_validate({name: getattr(profile, name) for name in cls.model_fields})

    @property
    def by_email(self) -> bool:
        """True when ``service_account`` names an existing account by its email (it may live in another
        project; it is adopted, never created)."""
        return bool(self.service_account and "@" in self.service_account)

    @property
    def bucket_location(self) -> str:
        """``location``, or `DEFAULT_LOCATION`."""
        return self.location or DEFAULT_LOCATION

    def check(self, sandbox: bool) -> None:
        """Check the fields for a run (before any cloud call).

        Rules, in this order: one credential kind per grant (``hmac`` and ``keyless`` exclude each other); the
        location's shape (`provision.names.check_gcs_location`); in the sandbox, whose emulator has no IAM, only
        ``keyless`` and a project that is a plain label; elsewhere a project id is required
        (`provision.names.check_project`); the service account's id or email
        (`provision.names.check_service_account_id`, `provision.names.service_account_email_id`).

        Args:
            sandbox: the run targets ``provision sandbox``.

        Raises:
            BadInput: the first rule broken, naming the fix.
        """
        if self.hmac and self.keyless:
            raise BadInput("--hmac and --keyless are mutually exclusive",
                           "one credential kind per grant: a JSON key file (the default), --hmac, or --keyless")
        if self.location is not None:
            check_gcs_location(self.location)
        if sandbox:
            if not self.keyless:
                kind = "an HMAC key" if self.hmac else "a JSON key file"
                raise BadInput(f"{SANDBOX_NOTE}; {kind} cannot be issued here",
                               "pass --keyless to try buckets in the sandbox, or use a real project")
            if self.project is not None and not _SANDBOX_PROJECT.match(self.project):
                raise BadInput(f"invalid --project {self.project!r}: lowercase letters, digits and '-', starting "
                               "with a letter", "pass e.g. --project demo (in the sandbox the project is only a "
                               "label)")
        else:
            if not self.project:
                raise BadInput("no --project given", "pass --project PROJECT_ID (or set project: in the env's "
                               "profile, envs/<env>.yaml)")
            check_project(self.project)
        if self.service_account:
            self.account_id("grant", Access.readonly)

    def account_id(self, label: str, access: Access) -> str:
        """The service account's id: ``service_account`` (an id, or the id part of an email), else
        ``provision-<label>-<ro|rw>`` with ``label`` lowercased, reduced to ``[a-z0-9-]`` and cut to 16
        characters, so the id fits the 30-character limit.

        Args:
            label: the grant's ``--prefix``, else its first bucket.
            access: the grant's access level (``ro`` / ``rw`` suffix).

        Raises:
            BadInput: the id breaks the service-account id rules (`provision.names.check_service_account_id`).
        """
        if self.service_account:
            if self.by_email:
                return service_account_email_id(self.service_account)
            return check_service_account_id(self.service_account)
        label = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:16].strip("-") or "grant"
        suffix = "rw" if access == Access.full else "ro"
        return check_service_account_id(f"provision-{label}-{suffix}")

    def account_email(self, account_id: str) -> str:
        """The service account's email: ``service_account`` when it is one, else
        ``<id>@<project>.iam.gserviceaccount.com`` (a domain-scoped project ``example.com:proj`` gives
        ``<id>@proj.example.com.iam.gserviceaccount.com``; no project: ``sandbox``).

        Source: https://cloud.google.com/iam/docs/service-account-overview#identifiers.
        """
        if self.service_account and self.by_email:
            return self.service_account
        project = self.project or "sandbox"
        if ":" in project:
            domain, name = project.split(":", 1)
            return f"{account_id}@{name}.{domain}.iam.gserviceaccount.com"
        return f"{account_id}@{project}.iam.gserviceaccount.com"
