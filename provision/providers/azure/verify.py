"""verify: the stored SAS or account key probed with real requests, as a `provision.providers.base.Probe` table.

What an account SAS allows per ``sp`` / ``srt``: https://learn.microsoft.com/rest/api/storageservices/create-account-sas
(an account SAS covers every container of its account; no SAS can set a container ACL:
https://learn.microsoft.com/rest/api/storageservices/set-container-acl). Denials are the service's 403 codes:
https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from provision.errors import BadInput, CloudRefused, ProvisionError
from provision.models import Access, KeyPair, SasToken
from provision.providers.azure.containers import PROBE_BLOB_PREFIX
from provision.providers.azure.credentials import user_credential
from provision.providers.azure.sdk import AccountAccess, azure_errors, describe, error_code, key_credential, status_code
from provision.providers.base import Probe, VerifyRow, run_concurrently, run_probes

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
        blob: the probe blob put into every container (``.provision-verify/<token>``); the reads use it.
        other: a temporary container standing for "another container" (``provision-verify-<token>``).
        made: the container the CreateContainer probe makes.
        doomed: the container the DeleteContainer probe removes (made by the set-up; distinct from ``made`` so
            the probes may run concurrently).
    """

    blob: str
    other: str
    made: str
    doomed: str

    @classmethod
    def new(cls, token: str | None = None) -> ProbeNames:
        """Names for ``token`` (default: 10 random hex digits)."""
        token = token or uuid.uuid4().hex[:10]
        other = f"provision-verify-{token}"
        return cls(f"{PROBE_BLOB_PREFIX}{token}", other, f"{other}-new", f"{other}-del")

    @property
    def put(self) -> tuple[str, ...]:
        """The blobs the set-up puts in every container: ``blob`` (read) and ``<blob>.d`` (DeleteBlob's)."""
        return (self.blob, f"{self.blob}.d")

    @property
    def written(self) -> tuple[str, ...]:
        """The blobs the write probes make in a container: ``<blob>.w`` (Put Blob), ``<blob>.b`` (Put Block List)."""
        return (f"{self.blob}.w", f"{self.blob}.b")


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
                other_account: tuple[str, Any] | None = None) -> list[Probe]:
    """The probes, in order; building the table makes no request, and every probe uses its own blob or container,
    so they may run concurrently. The SetContainerMetadata / SetContainerAcl probes first read the current values
    with ``admin`` to write them back unchanged.

    Args:
        buckets: the grant's containers (each holds the blobs ``names.put``).
        user: a BlobServiceClient with the grant's credential. admin: one with the account key.
        names: this run's names (``names.other`` exists and holds the probe blob; ``names.doomed`` exists).
        key_mode: the credential is the account key (the account's root credential: everything allowed in it).
        full: the grant may write (``full`` SAS, or the key).
        other_account: the sandbox's second account (its name, a BlobServiceClient for it with the grant's
            credential; ``names.other`` exists there and holds the probe blob), or None.

    Returns:
        Per container: ListBlobs, GetBlob, GetContainerProperties (allow; CVAT's attach check); PutBlob,
        SetContainerMetadata (``full``); SetContainerAcl (the key only); DeleteBlob (``full``); ListBlobs with
        delimiter ``/``, GetBlobProperties, a ranged GetBlob (allow: a Links connection and CVAT browse and read
        this way); PutBlock + PutBlockList (``full``: how large files are uploaded). Then ListContainers (the key
        only: ``srt=co`` has no service level); CreateContainer, DeleteContainer (``full``); ListBlobs, GetBlob on
        another container (allow: an account SAS covers the account), PutBlob there (``full``); GetBlob, ListBlobs,
        PutBlob in another account (deny).
    """
    blob, written, doomed, blocks = names.blob, names.written[0], names.put[1], names.written[1]
    rows: list[Probe] = []
    for container in buckets:
        theirs = admin.get_container_client(container)
        mine = user.get_container_client(container)
        rows += [
            Probe("ListBlobs", container, True, partial(_list, mine)),
            Probe("GetBlob", f"{container}/{blob}", True, partial(_read, mine, blob)),
            Probe("GetContainerProperties", container, True, mine.get_container_properties),
            Probe("PutBlob", f"{container}/{written}", full,
                  partial(mine.upload_blob, name=written, data=b"x", overwrite=True)),
            Probe("SetContainerMetadata", f"{container} (unchanged values)", full,
                  partial(_same_metadata, theirs, mine)),
            Probe("SetContainerAcl", f"{container} (unchanged values)", key_mode, partial(_same_acl, theirs, mine)),
            Probe("DeleteBlob", f"{container}/{doomed}", full, partial(mine.delete_blob, blob=doomed)),
            Probe("ListBlobs", f"{container} (delimiter=/)", True,
                  lambda mine=mine: first_page(mine.walk_blobs(delimiter="/", results_per_page=1))),
            Probe("GetBlobProperties", f"{container}/{blob}", True,
                  lambda mine=mine: mine.get_blob_client(blob).get_blob_properties()),
            Probe("GetBlob", f"{container}/{blob} (Range {RANGE})", True,
                  partial(_read, mine, blob, 0, RANGE_LENGTH)),
            Probe("PutBlockList", f"{container}/{blocks} (Put Block + Put Block List)", full,
                  partial(_put_blocks, mine, blocks)),
        ]
    rows += [
        Probe("ListContainers", "(account)", key_mode, lambda: first_page(user.list_containers(results_per_page=1))),
        Probe("CreateContainer", names.made, full, partial(user.create_container, name=names.made)),
        Probe("DeleteContainer", names.doomed, full, partial(user.delete_container, container=names.doomed)),
    ]
    scope = "account key" if key_mode else "an account SAS covers every container of the account"
    other = user.get_container_client(names.other)
    rows += [
        Probe("ListBlobs", f"{names.other} (another container: {scope})", True, partial(_list, other)),
        Probe("GetBlob", f"{names.other}/{blob} (another container)", True, partial(_read, other, blob)),
        Probe("PutBlob", f"{names.other}/{written} (another container)", full,
              partial(other.upload_blob, name=written, data=b"x", overwrite=True)),
    ]
    if other_account is not None:
        name, service = other_account
        theirs = service.get_container_client(names.other)
        rows += [
            Probe("GetBlob", f"{name}/{names.other}/{blob} (another account)", False, partial(_read, theirs, blob)),
            Probe("ListBlobs", f"{name}/{names.other} (another account)", False, partial(_list, theirs)),
            Probe("PutBlob", f"{name}/{names.other}/{written} (another account)", False,
                  partial(theirs.upload_blob, name=written, data=b"x", overwrite=True)),
        ]
    return rows


RANGE_LENGTH = 1024
RANGE = f"bytes=0-{RANGE_LENGTH - 1}"
"""The ranged read of the probes (what a viewer or CVAT's chunk reader asks for)."""


def _list(container: Any) -> list[Any]:
    return first_page(container.list_blobs(results_per_page=1))


def _read(container: Any, blob: str, offset: int | None = None, length: int | None = None) -> bytes:
    return container.download_blob(blob, offset=offset, length=length).readall()  # type: ignore[no-any-return]


def _put_blocks(container: Any, blob: str) -> Any:
    """Put Block, then Put Block List committing it (how the SDKs and Supervisely upload large blobs)."""
    from azure.storage.blob import BlobBlock

    client = container.get_blob_client(blob)
    client.stage_block("provision-verify-0", PROBE_DATA)
    return client.commit_block_list([BlobBlock(block_id="provision-verify-0")])


def _admin_read(call: Any) -> Any:
    """A read with the admin credential inside a probe; its failure is the set-up's, not the grant's verdict.

    Raises:
        CloudRefused: the admin credential could not read (propagates out of `run_probes`)."""
    try:
        return call()
    except azure_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {describe(exc)}",
                           "check the admin credential (key1 / the connection string)") from None


def _same_metadata(theirs: Any, mine: Any) -> Any:
    metadata = _admin_read(theirs.get_container_properties).metadata
    return mine.set_container_metadata(metadata=metadata)


def _same_acl(theirs: Any, mine: Any) -> Any:
    acl = _admin_read(theirs.get_container_access_policy)
    identifiers = {i.id: i.access_policy for i in acl.get("signed_identifiers") or []}
    return mine.set_container_access_policy(signed_identifiers=identifiers, public_access=acl.get("public_access"))


def verify(az: AzureProvider, state: Any) -> list[VerifyRow]:
    """Probe the stored SAS or account key against its grant (`probe_table`), with real requests, concurrently.

    With the admin credential (key1 / the connection string's key) it puts the probe blobs (`ProbeNames.put`) in
    each container, makes a temporary container ``provision-verify-<hex>`` (holding the probe blob) standing for
    "another container" and one (``-del``) for the DeleteContainer probe; in the sandbox also one in the second
    account; all at once. All are removed afterwards. The set-up also removes the temporary containers an
    interrupted verify left in the account (`leftovers` older than `STALE_AFTER`).

    Returns:
        One row per probe, in table order (31 for two containers in the sandbox, 28 elsewhere).

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
    made: list[tuple[Any, str]] = [(admin, names.other), (admin, names.doomed)]
    setup = [partial(_put_probe, admin, names.other, names.blob), partial(admin.create_container, names.doomed)]
    setup += [partial(_put_probe, admin, container, blob, create=False)
              for container in grant.buckets for blob in names.put]
    other_account = None
    if access.other is not None:
        name, key, url = access.other
        other = AccountAccess(name=name, blob_url=url.rstrip("/"), verify=access.verify, keys=lambda: {"key1": key})
        theirs = sdk.blob_service(other, key_credential(other))
        made.append((theirs, names.other))  # removed afterwards even when the create's answer is lost
        setup.append(partial(_put_probe, theirs, names.other, names.blob))
        other_account = (name, sdk.blob_service(other, user_credential(grant.auth, account=name)))
    try:
        stale = datetime.now(timezone.utc) - STALE_AFTER
        setup += [partial(_remove_container, admin, name) for name in leftovers(admin, stale)]
        run_concurrently(setup)
        return run_probes(probe_table(grant.buckets, user, admin, names, key_mode, full, other_account), outcome)
    except azure_errors() as exc:
        raise CloudRefused(f"verify could not set up its probes: {describe(exc)}",
                           "check the admin credential (key1 / the connection string)") from None
    finally:
        _clean_up(admin, made + [(admin, names.made)], grant.buckets, names)


STALE_AFTER = timedelta(minutes=5)
"""A temporary container made longer ago than this is a leftover of an interrupted verify (a running verify removes
its own within seconds), removed by the next verify."""
TEMPORARY = re.compile(r"provision-verify-[0-9a-f]{10}(-new|-del)?")
"""Names of verify's temporary containers (`ProbeNames`)."""


def leftovers(service: Any, before: datetime) -> list[str]:
    """Verify's temporary containers (`TEMPORARY`) last modified before ``before`` (an aware UTC datetime), in
    listing order: what an interrupted verify left.

    Raises:
        azure-core's error when the listing is refused.
    """
    return [c.name for c in service.list_containers(name_starts_with="provision-verify-")
            if TEMPORARY.fullmatch(c.name) and c.last_modified is not None and c.last_modified < before]


def _remove_container(service: Any, name: str) -> None:
    """Delete a container; one already gone is fine."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        service.delete_container(name)
    except ResourceNotFoundError:
        pass


def _put_probe(service: Any, container: str, blob: str, create: bool = True) -> None:
    """Put ``blob`` in ``container`` with ``service`` (making the container first when ``create``)."""
    if create:
        service.create_container(container)
    service.get_container_client(container).upload_blob(blob, PROBE_DATA, overwrite=True)


def _clean_up(admin: Any, containers: list[tuple[Any, str]], buckets: list[str], names: ProbeNames) -> None:
    """Remove the probe containers and blobs, concurrently; a failure is reported once, naming what is left."""
    from azure.core.exceptions import ResourceNotFoundError

    def remove(call: Any, what: str) -> str | None:
        try:
            call()
        except ResourceNotFoundError:
            pass
        except azure_errors() as exc:
            return f"{what}: {describe(exc)}"
        return None

    calls = [partial(remove, partial(service.delete_container, name), name) for service, name in containers]
    calls += [partial(remove, partial(admin.get_container_client(container).delete_blob, blob),
                      f"{container}/{blob}")
              for container in buckets for blob in names.put + names.written]
    problems = [p for p in run_concurrently(calls) if p is not None]
    if problems:
        raise ProvisionError(f"verify could not remove its probes: {problems[0]}",
                             f"delete containers {names.other}* and blobs {names.blob}* by hand")
