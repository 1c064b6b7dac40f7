"""verify: the stored SAS or account key probed with real requests, as a `provision.providers.base.Probe` table.

What an account SAS allows per ``sp`` / ``srt``: https://learn.microsoft.com/rest/api/storageservices/create-account-sas
(an account SAS covers every container of its account; no SAS can set a container ACL:
https://learn.microsoft.com/rest/api/storageservices/set-container-acl). Denials are the service's 403 codes:
https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from provision.errors import BadInput, CloudRefused, ProvisionError
from provision.models import Access, KeyPair, SasToken
from provision.providers.azure.credentials import user_credential
from provision.providers.azure.sdk import AccountAccess, azure_errors, describe, error_code, key_credential, status_code
from provision.providers.base import Probe, VerifyRow, run_probes

if TYPE_CHECKING:
    from provision.providers.azure.provider import AzureProvider

DENIED = ("AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch", "AuthenticationFailed",
          "AuthorizationFailure", "AuthorizationServiceMismatch", "AuthorizationProtocolMismatch",
          "AuthorizationSourceIPMismatch", "InsufficientAccountPermissions")
"""Blob service error codes meaning "this credential may not do that" (any other 403 counts too)."""
PROBE_DATA = b"provision verify"


@dataclass(frozen=True)
class ProbeNames:
    """The names one verify run uses, all with the same random token.

    Attributes:
        blob: the probe blob put into every container (``.provision-verify/<token>``).
        other: a temporary container standing for "another container" (``provision-verify-<token>``).
        made: the container the CreateContainer probe makes and DeleteContainer removes.
    """

    blob: str
    other: str
    made: str

    @classmethod
    def new(cls, token: str | None = None) -> ProbeNames:
        """Names for ``token`` (default: 10 random hex digits)."""
        token = token or uuid.uuid4().hex[:10]
        return cls(f".provision-verify/{token}", f"provision-verify-{token}", f"provision-verify-{token}-new")


def outcome(exc: BaseException) -> str | None:
    """A probe's exception as a verify verdict: ``deny`` for a 403 / `DENIED` code, ``error: <code>`` for any other
    answer of the service, None for anything else (it propagates)."""
    from azure.core.exceptions import HttpResponseError

    if not isinstance(exc, HttpResponseError):
        return None
    code = error_code(exc)
    return "deny" if code in DENIED or status_code(exc) == 403 else f"error: {code or status_code(exc)}"


def first_page(pager: Any) -> list[Any]:
    """The first page of an azure paged listing (the request is only made when a page is fetched)."""
    return list(next(pager.by_page(), []))


def probe_table(buckets: list[str], user: Any, admin: Any, names: ProbeNames, key_mode: bool, full: bool,
                other_account: tuple[str, Any] | None = None) -> Iterator[Probe]:
    """The probes, in order; built lazily, as the admin's reads of each container's metadata and ACL (to write
    them back unchanged) come between rows.

    Args:
        buckets: the grant's containers (each holds the probe blob ``names.blob``).
        user: a BlobServiceClient with the grant's credential. admin: one with the account key.
        names: this run's names (``names.other`` exists and holds the probe blob).
        key_mode: the credential is the account key (the account's root credential: everything allowed in it).
        full: the grant may write (``full`` SAS, or the key).
        other_account: the sandbox's second account (its name, a BlobServiceClient for it with the grant's
            credential; ``names.other`` exists there and holds the probe blob), or None.

    Yields:
        Per container: ListBlobs, GetBlob, GetContainerProperties (allow); PutBlob, SetContainerMetadata (``full``);
        SetContainerAcl (the key only); DeleteBlob (``full``). Then ListContainers (the key only: ``srt=co`` has
        no service level); CreateContainer, DeleteContainer (``full``); ListBlobs, GetBlob on another container
        (allow: an account SAS covers the account), PutBlob there (``full``); GetBlob, ListBlobs in another account
        (deny).
    """
    blob, written = names.blob, f"{names.blob}.w"
    for container in buckets:
        theirs = admin.get_container_client(container)
        mine = user.get_container_client(container)
        yield Probe("ListBlobs", container, True, partial(_list, mine))
        yield Probe("GetBlob", f"{container}/{blob}", True, partial(_read, mine, blob))
        yield Probe("GetContainerProperties", container, True, mine.get_container_properties)
        yield Probe("PutBlob", f"{container}/{written}", full,
                    partial(mine.upload_blob, name=written, data=b"x", overwrite=True))
        metadata = theirs.get_container_properties().metadata
        yield Probe("SetContainerMetadata", f"{container} (unchanged values)", full,
                    partial(mine.set_container_metadata, metadata=metadata))
        acl = theirs.get_container_access_policy()
        identifiers = {i.id: i.access_policy for i in acl.get("signed_identifiers") or []}
        yield Probe("SetContainerAcl", f"{container} (unchanged values)", key_mode,
                    partial(mine.set_container_access_policy, signed_identifiers=identifiers,
                            public_access=acl.get("public_access")))
        yield Probe("DeleteBlob", f"{container}/{blob}", full, partial(mine.delete_blob, blob=blob))
    yield Probe("ListContainers", "(account)", key_mode, lambda: first_page(user.list_containers(results_per_page=1)))
    yield Probe("CreateContainer", names.made, full, partial(user.create_container, name=names.made))
    yield Probe("DeleteContainer", names.made, full, partial(user.delete_container, container=names.made))
    scope = "account key" if key_mode else "an account SAS covers every container of the account"
    other = user.get_container_client(names.other)
    yield Probe("ListBlobs", f"{names.other} (another container: {scope})", True, partial(_list, other))
    yield Probe("GetBlob", f"{names.other}/{blob} (another container)", True, partial(_read, other, blob))
    yield Probe("PutBlob", f"{names.other}/{written} (another container)", full,
                partial(other.upload_blob, name=written, data=b"x", overwrite=True))
    if other_account is not None:
        name, service = other_account
        theirs = service.get_container_client(names.other)
        yield Probe("GetBlob", f"{name}/{names.other}/{blob} (another account)", False, partial(_read, theirs, blob))
        yield Probe("ListBlobs", f"{name}/{names.other} (another account)", False, partial(_list, theirs))


def _list(container: Any) -> list[Any]:
    return first_page(container.list_blobs(results_per_page=1))


def _read(container: Any, blob: str) -> bytes:
    return container.download_blob(blob).readall()  # type: ignore[no-any-return]


def verify(az: AzureProvider, state: Any) -> list[VerifyRow]:
    """Probe the stored SAS or account key against its grant (`probe_table`), with real requests.

    With the admin credential (key1 / the connection string's key) it puts one probe blob in each container and
    makes a temporary container ``provision-verify-<hex>`` standing for "another container"; in the sandbox also
    one in the second account. All are removed afterwards.

    Returns:
        One row per probe (22 for two containers in the sandbox, 20 elsewhere).

    Raises:
        BadInput: the grant has no credential to probe (``--keyless``).
        CloudRefused: the admin credential could not set up the probes.
        ProvisionError: the probes could not be removed (names them).
    """
    grant = state.grant
    if grant is None or not isinstance(grant.auth, (SasToken, KeyPair)):
        raise BadInput("this grant has no SAS or key to probe (--keyless: RBAC for a managed identity)",
                       "verify from the VM that carries the identity")
    sdk = az.sdk
    access = sdk.stored_access(state)
    admin = sdk.blob_service(access, key_credential(access))
    user = sdk.blob_service(access, user_credential(grant.auth))
    key_mode = isinstance(grant.auth, KeyPair)
    full = key_mode or grant.access == Access.full
    names = ProbeNames.new()
    made: list[tuple[Any, str]] = []
    try:
        _put_probe(admin, names.other, names.blob, create=True, made=made)
        for container in grant.buckets:
            _put_probe(admin, container, names.blob)
        other_account = None
        if access.other is not None:
            name, key, url = access.other
            other = AccountAccess(name=name, blob_url=url.rstrip("/"), verify=access.verify, keys=lambda: {"key1": key})
            _put_probe(sdk.blob_service(other, key_credential(other)), names.other, names.blob, create=True, made=made)
            other_account = (name, sdk.blob_service(other, user_credential(grant.auth, account=name)))
        return run_probes(probe_table(grant.buckets, user, admin, names, key_mode, full, other_account), outcome)
    except azure_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {describe(exc)}",
                           "check the admin credential (key1 / the connection string)") from None
    finally:
        _clean_up(admin, made + [(admin, names.made)], grant.buckets, names)


def _put_probe(service: Any, container: str, blob: str, create: bool = False,
               made: list[tuple[Any, str]] | None = None) -> None:
    if create:
        if made is not None:
            made.append((service, container))  # removed afterwards even when the create's answer is lost
        service.create_container(container)
    service.get_container_client(container).upload_blob(blob, PROBE_DATA, overwrite=True)


def _clean_up(admin: Any, containers: list[tuple[Any, str]], buckets: list[str], names: ProbeNames) -> None:
    """Remove the probe containers and blobs; a failure is reported once, naming what is left."""
    from azure.core.exceptions import ResourceNotFoundError

    problems = []
    for service, name in containers:
        try:
            service.delete_container(name)
        except ResourceNotFoundError:
            pass
        except azure_errors() as exc:
            problems.append(f"{name}: {describe(exc)}")
    for container in buckets:
        for blob in (names.blob, f"{names.blob}.w"):
            try:
                admin.get_container_client(container).delete_blob(blob)
            except ResourceNotFoundError:
                pass
            except azure_errors() as exc:
                problems.append(f"{container}/{blob}: {describe(exc)}")
    if problems:
        raise ProvisionError(f"verify could not remove its probes: {problems[0]}",
                             f"delete containers {names.other}* and blobs {names.blob}* by hand")
