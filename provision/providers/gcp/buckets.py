"""Buckets: create them locked down (uniform bucket-level access, public access prevention enforced), adopt
existing ones, and harden what is not locked down. Source of both settings:
https://cloud.google.com/storage/docs/uniform-bucket-level-access and
https://cloud.google.com/storage/docs/public-access-prevention.
"""

from __future__ import annotations

from typing import Any

from provision.errors import CloudRefused, counted
from provision.ledger import Plan
from provision.models import Resource
from provision.providers.gcp.marks import GcsMarks, label_marks, live_labels, share
from provision.providers.gcp.sdk import TIMEOUT, storage_retry
from provision.providers.owner_marks import OwnerMark, check_adoptable, ours

SECURE = "uniform bucket-level access, public access prevention enforced"
"""How a locked-down bucket is reported."""


def locked_down(bucket: Any) -> Any:
    """Set uniform bucket-level access on and public access prevention ``enforced`` on a bucket object (no
    request); returns it."""
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    return bucket


def insecure(bucket: Any) -> list[str]:
    """What is not locked down on ``bucket`` (as read from Cloud Storage): uniform bucket-level access off,
    public access prevention not ``enforced``. Empty when both are set."""
    config = bucket.iam_configuration
    problems = []
    if not config.uniform_bucket_level_access_enabled:
        problems.append("uniform bucket-level access off")
    if config.public_access_prevention != "enforced":
        problems.append(f"public access prevention {config.public_access_prevention!r}")
    return problems


def harden(bucket: Any, labels: dict[str, str] | None = None) -> None:
    """PATCH uniform bucket-level access on and public access prevention ``enforced`` (and ``labels`` added to the
    bucket's, when given), guarded by the metageneration read (a concurrent change of the bucket's settings makes
    it fail rather than be overwritten)."""
    if labels:
        bucket.labels = {**live_labels(bucket), **labels}
    locked_down(bucket).patch(if_metageneration_match=bucket.metageneration, retry=storage_retry(), timeout=TIMEOUT)


def ensure_bucket(storage: Any, name: str, project: str, location: str, harden_adopted: bool, state: Any,
                  plan: Plan, refused: tuple[type[BaseException], ...]) -> None:
    """Create bucket ``name`` locked down, or adopt it when it exists; harden it when Cloud Storage dropped the
    settings from the insert (the emulator does), when `provision` created it, or when ``harden_adopted``.

    Args:
        storage: the admin's google-cloud-storage client.
        name: the bucket name (checked).
        project: the project that gets a new bucket. location: its location.
        harden_adopted: ``--harden``: fix an adopted bucket's settings instead of only reporting them.
        state: the grant's record (read). plan: the ledger.
        refused: the SDK's "the service answered with an error" types (a refused create is forgotten).

    Raises:
        CloudRefused: the name belongs to another project (403 on read, or 409 on create for a bucket these
            credentials cannot see). The SDK's errors otherwise.
    """
    from google.api_core.exceptions import Conflict, Forbidden

    try:
        bucket = storage.lookup_bucket(name, retry=storage_retry(), timeout=TIMEOUT)
    except Forbidden:
        raise CloudRefused(f"bucket {name!r} exists but belongs to someone else (or the admin credentials may "
                           "not see it)", "choose another bucket name") from None
    if bucket is None:
        resource = Resource(kind="bucket", name=name, created=True)
        marks = OwnerMark.of(state).fields("label")
        new = locked_down(storage.bucket(name))
        new.labels = marks
        try:
            bucket = plan.create(resource, f"in {location}, {SECURE}", storage.create_bucket, refused=refused,
                                 bucket_or_name=new, project=project,
                                 location=location, retry=storage_retry(), timeout=TIMEOUT)
        except Conflict:
            # The SDK retries a create whose answer was lost: a 409 then usually means our first attempt worked.
            # A bucket these credentials can see now (it was absent a moment ago) is ours: keep it tracked; one
            # they cannot see belongs to someone else.
            try:
                bucket = storage.lookup_bucket(name, retry=storage_retry(), timeout=TIMEOUT)
            except Forbidden:
                bucket = None
            if bucket is None:
                raise CloudRefused(f"bucket name {name!r} is taken by another project",
                                   "Cloud Storage bucket names are global; choose another") from None
            plan.record(resource)
        if bucket is None:  # planned, not created
            return
        missing = insecure(bucket)
        labels = marks if any((bucket.labels or {}).get(k) != v for k, v in marks.items()) else None
        if labels:
            missing.append("owner labels missing")
        if missing:  # the service dropped settings from the insert body (the emulator does): set them now
            plan.update("bucket", name, f"the service ignored them on create: {'; '.join(missing)} → set", harden,
                        bucket=bucket, labels=labels)
        return
    record = state.find("bucket", name)
    found = label_marks(live_labels(bucket))
    mine = ours(found.owner, state)
    where = f" (in {bucket.location}, not {location} as asked)" if (
        bucket.location or "").upper() != location.upper() else ""
    if mine and record is None:  # an earlier run of this state created it and lost the answer
        plan.note("no change", "bucket", name, f"exists{where}; created by this environment earlier (its owner "
                  "mark): tracked as created")
        plan.record(Resource(kind="bucket", name=name, created=True))
    else:
        plan.adopt(Resource(kind="bucket", name=name, created=False),
                   f"exists{where}; adopted (destroy never deletes it)")
        if record is None or not record.created:  # another state's bucket, adopted with --adopt
            share(plan, state, GcsMarks(storage), "bucket", name, found)
    missing = insecure(bucket)
    if not missing:
        plan.note("no change", "bucket", name, SECURE)
    elif mine or (record is not None and record.created) or harden_adopted:
        plan.update("bucket", name, f"{'; '.join(missing)} → {SECURE}", harden, bucket=bucket)
    else:
        plan.note("no change", "bucket", name, f"not hardened: {'; '.join(missing)} (pass --harden to fix; "
                  "uniform access turns off object ACLs)")


def check_bucket_marks(storage: Any, names: list[str], state: Any, adopt: bool) -> None:
    """Before any change: refuse a bucket another provision state labelled as its own
    (`provision.providers.owner_marks.check_adoptable`). A bucket these credentials cannot read is left to
    `ensure_bucket`, which explains it."""
    from google.api_core.exceptions import Forbidden

    for name in names:
        try:
            bucket = storage.lookup_bucket(name, retry=storage_retry(), timeout=TIMEOUT)
        except Forbidden:
            continue
        if bucket is not None:
            check_adoptable("bucket", name, label_marks(live_labels(bucket)).owner, state, adopt)


def holds_objects(storage: Any, name: str) -> bool:
    """True when bucket ``name`` holds any object (any generation); False when it is empty or gone."""
    from google.api_core.exceptions import NotFound

    try:
        return any(True for _ in storage.list_blobs(name, max_results=1, versions=True, retry=storage_retry(),
                                                    timeout=TIMEOUT))
    except NotFound:
        return False


def delete_bucket(storage: Any, name: str, plan: Plan) -> None:
    """Delete every object (every generation) of bucket ``name``, a page of 1,000 per reported change, then the
    bucket (reached only with ``--delete-data`` or when it is empty).

    Raises:
        google.api_core.exceptions.NotFound: the bucket is gone. The SDK's errors otherwise.
    """
    page: list[Any] = []

    def delete(blobs: list[Any]) -> None:
        for blob in blobs:
            blob.delete(retry=storage_retry(), timeout=TIMEOUT)

    for blob in storage.list_blobs(name, versions=True, retry=storage_retry(), timeout=TIMEOUT):
        page.append(storage.bucket(name).blob(blob.name, generation=blob.generation))
        if len(page) == 1000:
            plan.delete("objects", name, counted(len(page), 'object'), delete, blobs=page)
            page = []
    if page:
        plan.delete("objects", name, counted(len(page), 'object'), delete, blobs=page)
    plan.delete("bucket", name, "bucket", storage.bucket(name).delete, retry=storage_retry(), timeout=TIMEOUT)
