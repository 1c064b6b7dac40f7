"""The grant's identity and its one credential: the service account, then a JSON key file, an HMAC key, or none
(``--keyless``). A new key is issued through `Plan.issue`, which records its id and the Grant holding it at once;
older keys are deleted only after the new credential works (`retire` defers it).

Sources: https://cloud.google.com/iam/docs/service-accounts-create,
https://cloud.google.com/iam/docs/keys-create-delete, https://cloud.google.com/storage/docs/authentication/hmackeys.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provision.errors import CloudRefused
from provision.files import atomic_write, remove_orphan_temporaries
from provision.ledger import Plan
from provision.models import Grant, KeyFile, KeyPair, Resource
from provision.providers.gcp.intents import live_keys, record_intent, settle
from provision.providers.gcp.marks import GcsMarks, share, text_marks
from provision.providers.gcp.sdk import IAM_TIMEOUT, TIMEOUT, GcsClients, iam_retry, storage_retry
from provision.providers.owner_marks import OwnerMark, check_adoptable, ours
from provision.state import state_dir

KEY_KINDS = ("sa_key", "hmac_key")
"""Resource kinds of issued keys."""


def key_file_path(env: str, key_id: str) -> Path:
    """Where JSON key ``key_id`` of environment ``env`` lives: ``<state dir>/keys/<env>-<key id, 12 chars>.json``
    (absolute; 0600 in a 0700 directory). One file per key, so a rotation changes the path that
    ``docker-compose.override.yml`` mounts and ``supervisely up -d`` recreates ``http-storage`` with the new key
    (a bind-mounted file replaced under the same path would stay the old, deleted key inside a running container).
    """
    return state_dir() / "keys" / f"{env}-{key_id[:12]}.json"


def write_key_file(path: Path, data: bytes) -> None:
    """Write a JSON key to ``path`` atomically, 0600, in a 0700 directory (made when missing).

    Raises:
        OSError: the directory or the file cannot be written.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    atomic_write(path, data)


def sa_path(project: str, email: str, by_email: bool) -> str:
    """The IAM resource name of a service account: ``projects/<project>/serviceAccounts/<email>``, with ``-`` as
    the project for an account given by email (it may live in another project)."""
    return f"projects/{'-' if by_email else project}/serviceAccounts/{email}"


def ensure_service_account(clients: GcsClients, email: str, account_id: str, by_email: bool, description: str,
                           state: Any, plan: Plan, refused: tuple[type[BaseException], ...]) -> bool:
    """Adopt the service account when it exists, else create it in the project (an account given by email is
    never created).

    Args:
        clients: the SDK seam. email, account_id: the account. by_email: it was given by email.
        description: what it is for (``readonly on a, b``), shown in the console.
        state: the grant's record (its ``env`` names the account). plan: the ledger.
        refused: the SDK's "the service answered with an error" types.

    Returns:
        True when this run created it.

    Raises:
        CloudRefused: an account given by email does not exist.
    """
    iam = clients.iam()
    current = read_service_account(clients, email, by_email)
    if current is not None:
        marks = text_marks(current.description)
        if ours(marks.owner, state) and state.find("service_account", email) is None:
            plan.note("no change", "service_account", email, "created by this environment earlier (its owner "
                      "mark): tracked as created")
            plan.record(Resource(kind="service_account", name=email, created=True))
            return True
        recorded = state.find("service_account", email)
        if not plan.adopt(Resource(kind="service_account", name=email, created=False)):
            plan.note("no change", "service_account", email, "service account")
        if recorded is None or not recorded.created:  # another state's account, adopted with --adopt
            share(plan, state, GcsMarks(clients=clients, by_email=by_email), "service_account", email, marks)
        return False
    if by_email:
        raise CloudRefused(f"service account {email} does not exist",
                           "pass an id (--service-account provision-acme-ro) to create one in --project")
    plan.create(Resource(kind="service_account", name=email, created=True), f"for {description}",
                iam.create_service_account, refused=refused, request={
                    "name": f"projects/{clients.project}", "account_id": account_id,
                    "service_account": {"display_name": f"provision {state.env}"[:100],
                                        "description": f"{OwnerMark.of(state).text()}: {description}"[:256]}},
                timeout=IAM_TIMEOUT)
    return True


def read_service_account(clients: GcsClients, email: str, by_email: bool) -> Any:
    """The service account (an ``iam_admin_v1`` ServiceAccount), or None when it does not exist."""
    from google.api_core.exceptions import NotFound

    try:
        return clients.iam().get_service_account(name=sa_path(clients.project, email, by_email), retry=iam_retry(),
                                                 timeout=IAM_TIMEOUT)
    except NotFound:
        return None


def check_service_account_mark(clients: GcsClients, email: str, by_email: bool, state: Any, adopt: bool) -> None:
    """Before any change: refuse a service account whose description carries another provision state's owner
    mark (service accounts have no labels), unless ``adopt``.

    Raises:
        BadInput: as `provision.providers.owner_marks.check_adoptable`.
    """
    current = read_service_account(clients, email, by_email)
    if current is not None:
        check_adoptable("service account", email, text_marks(current.description).owner, state, adopt)


def ensure_key_file(clients: GcsClients, email: str, by_email: bool, new_sa: bool, state: Any, plan: Plan,
                    grant_of: Callable[[Any], Grant]) -> KeyFile | None:
    """Keep the stored JSON key when it is live at Google, its file is on disk and the Grant holds it; else (or
    with ``--rotate``) issue one, write it to `key_file_path` (0600) right after its id and the Grant are
    persisted, and defer deleting the older keys (`retire`).

    Returns:
        The key file credential; None in a dry run when one would be issued.

    Raises:
        CloudRefused: an organisation policy forbids keys (names ``--hmac`` and ``--keyless``).
    """
    from google.api_core.exceptions import FailedPrecondition
    from google.cloud.iam_admin_v1 import types

    iam = clients.iam()
    account = sa_path(clients.project, email, by_email)
    current = next((r for r in reversed(state.resources) if r.kind == "sa_key" and r.parent == email), None)
    path = key_file_path(state.env, current.name) if current is not None else None
    live: set[str] = set()
    if not new_sa and current is not None:
        listed = iam.list_service_account_keys(
            name=account, key_types=[types.ListServiceAccountKeysRequest.KeyType.USER_MANAGED],
            retry=iam_retry(), timeout=IAM_TIMEOUT)
        live = {k.name.rsplit("/", 1)[-1] for k in listed.keys}
    usable = (current is not None and path is not None and current.name in live and path.is_file()
              and state.grant is not None and state.grant.auth == KeyFile(path=str(path)))
    if usable and not plan.rotate:
        assert current is not None
        plan.note("no change", "sa_key", current.name, f"of {email}, in {path}")
        retire(clients, by_email, state, plan, keep=current.name)
        return KeyFile(path=str(path))
    where = state_dir() / "keys" / f"{state.env}-<key id>.json"
    if usable:
        detail = f"rotation: new JSON key in {where}; the old key and its file go once the new one works"
    elif current is not None:
        detail = f"the stored key is gone or its file is missing: new JSON key in {where} (0600)"
    else:
        detail = f"new JSON key, written to {where} (0600, never printed)"

    def keep(created: Any) -> tuple[Resource, Grant]:
        key_id = created.name.rsplit("/", 1)[-1]
        return (Resource(kind="sa_key", name=key_id, created=True, parent=email),
                grant_of(KeyFile(path=str(key_file_path(state.env, key_id)))))

    before = set() if new_sa else {key for key, _ in live_keys(clients, "sa_key", email, by_email)}
    record_intent(plan, "sa_key", email)  # a lost answer leaves a key no state tracks: settled below
    try:
        created = plan.issue("sa_key", email, detail, iam.create_service_account_key, keep, request={
            "name": account, "private_key_type": types.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE,
            "key_algorithm": types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048}, timeout=IAM_TIMEOUT)
    except FailedPrecondition:
        raise CloudRefused(f"an organisation policy forbids keys for service account {email} "
                           "(constraints/iam.disableServiceAccountKeyCreation)",
                           "use --hmac (an HMAC key for the S3-interoperable endpoint) or --keyless (the VM's "
                           "attached service account)") from None
    if created is None:  # planned, not issued
        return None
    key_id = created.name.rsplit("/", 1)[-1]
    auth = KeyFile(path=str(key_file_path(state.env, key_id)))
    # The key's id and the Grant are persisted; the private key exists only in this answer: write it now.
    write_key_file(Path(auth.path), bytes(created.private_key_data))
    settle(clients, by_email, state, plan, "sa_key", email, before)
    retire(clients, by_email, state, plan, keep=key_id)
    return auth


def ensure_hmac(clients: GcsClients, email: str, by_email: bool, state: Any, plan: Plan,
                grant_of: Callable[[Any], Grant]) -> KeyPair | None:
    """Keep the stored HMAC key while it is ACTIVE and belongs to ``email``; else (or with ``--rotate``) create
    one for the service account (the secret is returned once and goes straight into the Grant) and defer retiring
    the older keys.

    Returns:
        The key pair; None in a dry run when one would be issued.
    """
    from google.api_core.exceptions import NotFound
    from google.cloud.storage.hmac_key import HMACKeyMetadata

    storage = clients.storage()
    stored = state.grant.auth if state.grant is not None and isinstance(state.grant.auth, KeyPair) else None
    if stored is not None and state.find("hmac_key", stored.access_key) is not None:
        meta = HMACKeyMetadata(storage, access_id=stored.access_key, project_id=clients.project)
        try:
            meta.reload(retry=storage_retry(), timeout=TIMEOUT)
            active = meta.state == HMACKeyMetadata.ACTIVE_STATE and meta.service_account_email == email
        except NotFound:
            active = False
        if active and not plan.rotate:
            plan.note("no change", "hmac_key", stored.access_key, f"of {email}")
            retire(clients, by_email, state, plan, keep=stored.access_key)
            return stored
    detail = "rotation: new HMAC key" if stored is not None and plan.rotate else (
        "new HMAC key for the S3-interoperable endpoint (secret stored in state, masked in output)")

    def keep(created: Any) -> tuple[Resource, Grant]:
        meta, secret = created
        return (Resource(kind="hmac_key", name=meta.access_id, created=True, parent=email),
                grant_of(KeyPair(access_key=meta.access_id, secret_key=secret)))

    before = {key for key, _ in live_keys(clients, "hmac_key", email, by_email)}
    record_intent(plan, "hmac_key", email)  # a lost answer leaves a key no state tracks: settled below
    created = plan.issue("hmac_key", email, detail, storage.create_hmac_key, keep, service_account_email=email,
                         project_id=clients.project, timeout=TIMEOUT)
    if created is None:  # planned, not issued
        return None
    meta, secret = created
    settle(clients, by_email, state, plan, "hmac_key", email, before)
    retire(clients, by_email, state, plan, keep=meta.access_id)
    return KeyPair(access_key=meta.access_id, secret_key=secret)


def retire(clients: GcsClients, by_email: bool, state: Any, plan: Plan, keep: str | None) -> None:
    """Defer deleting every key `provision` issued other than ``keep`` (a rotation's old key, or the key of
    another credential kind): it goes only after the new credential is verified and the files re-rendered."""
    for r in [r for r in state.resources if r.kind in KEY_KINDS and r.created and r.name != keep]:
        plan.defer("delete", r.kind, r.name, "the old key, once the new credential works and the rendered files "
                   "hold it", delete_key, clients=clients, by_email=by_email, state=state, resource=r, plan=plan,
                   report=False)


def delete_key(clients: GcsClients, by_email: bool, state: Any, resource: Resource, plan: Plan,
               report: bool) -> None:
    """Delete one issued key (an HMAC key is deactivated first, as Cloud Storage requires); one already gone
    counts as deleted. Forgets it in state and removes its key file.

    Args:
        report: record the deletion as changes of ``plan`` (``destroy``); False when it was recorded already
            (a deferred retirement, performed as is).
    """
    from google.api_core.exceptions import NotFound
    from google.cloud.storage.hmac_key import HMACKeyMetadata

    def run(action: str, detail: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        if not report:
            return call(**kwargs)
        change = plan.delete if action == "delete" else plan.update
        return change(resource.kind, resource.name, detail, call, **kwargs)

    try:
        if resource.kind == "sa_key":
            account = sa_path(clients.project, resource.parent or "", by_email)
            run("delete", f"of {resource.parent}", clients.iam().delete_service_account_key,
                request={"name": f"{account}/keys/{resource.name}"}, retry=iam_retry(), timeout=IAM_TIMEOUT)
        else:
            meta = HMACKeyMetadata(clients.storage(), access_id=resource.name, project_id=clients.project)
            meta.reload(retry=storage_retry(), timeout=TIMEOUT)
            if meta.state == HMACKeyMetadata.ACTIVE_STATE:
                meta.state = HMACKeyMetadata.INACTIVE_STATE
                run("update", "deactivate (required before delete)", meta.update, retry=None, timeout=TIMEOUT)
            run("delete", f"of {resource.parent}", meta.delete, retry=storage_retry(), timeout=TIMEOUT)
    except NotFound:
        if report:
            plan.note("no change", resource.kind, resource.name, "already gone")
    plan.forget(resource.kind, resource.name)
    if resource.kind == "sa_key" and state.find(resource.kind, resource.name) is None:  # forgotten: not a dry run
        path = key_file_path(state.env, resource.name)
        path.unlink(missing_ok=True)
        remove_orphan_temporaries(path, every_name=True)
        try:
            path.parent.rmdir()  # the last key file of every env gone: no empty keys/ left behind
        except OSError:
            pass
