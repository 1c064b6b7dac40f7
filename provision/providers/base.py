"""The provider interface and the plan recorder through which every mutating cloud call goes.

Dry-run is decided here, where writes happen (the idea of copier's ``pretend``): a provider reads freely, and
routes each mutating SDK call through `Plan.write`, which records the change and performs the call only when
not in dry-run. There is no second "would create" code path to drift from the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

from provision.errors import BadInput
from provision.models import Change, Grant, Resource
from provision.profiles import Profile
from provision.state import State

T = TypeVar("T")


class Plan:
    """Records the changes of one run and performs the mutating calls unless ``dry_run``.

    Args:
        dry_run: when True, `write` records the change and returns None without calling anything.
        rotate: issue a new secret even when the stored one still works (``--rotate``).
    """

    def __init__(self, dry_run: bool = False, rotate: bool = False) -> None:
        self.dry_run = dry_run
        self.rotate = rotate
        self.changes: list[Change] = []
        self.deferred: list[tuple[Callable[..., Any], dict[str, Any]]] = []

    def note(self, action: str, kind: str, name: str, detail: str = "") -> None:
        """Record a change that needs no mutating call (``adopt``, ``no change``)."""
        self.changes.append(Change(action=action, kind=kind, name=name, detail=detail))  # type: ignore[arg-type]

    def write(self, action: str, kind: str, name: str, detail: str, call: Callable[..., T], **kwargs: Any) -> T | None:
        """Record a mutating change and, unless dry-run, perform it.

        Args:
            action: ``create`` | ``update`` | ``issue`` | ``delete``.
            kind, name, detail: as in `Change`.
            call: the SDK method; called as ``call(**kwargs)``.

        Returns:
            The call's result, or None in dry-run.

        Raises:
            Whatever ``call`` raises.
        """
        self.changes.append(Change(action=action, kind=kind, name=name, detail=detail))  # type: ignore[arg-type]
        if self.dry_run:
            return None
        return call(**kwargs)

    def create(self, state: State, save: Callable[[], None], resource: Resource, detail: str,
               call: Callable[..., T], refused: tuple[type[BaseException], ...], **kwargs: Any) -> T | None:
        """Create ``resource`` through `write`, recording it in ``state`` *before* the call (a crash after the
        cloud created it but before we heard back leaves it tracked) and forgetting it again when the cloud answers
        with one of ``refused`` (it then did not create it). A connection failure or an interrupt keeps the record:
        the resource may exist, and a re-run or ``destroy`` settles it.

        Args:
            state, save: the environment's state and its saver.
            resource: the record (``created=True``).
            detail: as in `Change`.
            call: the SDK's create method, called as ``call(**kwargs)``.
            refused: the SDK's "the service answered with an error" exception types.

        Returns:
            The call's result, or None in dry-run.

        Raises:
            Whatever ``call`` raises.
        """
        if not self.dry_run:
            state.record(resource)
            save()
        try:
            return self.write("create", resource.kind, resource.name, detail, call, **kwargs)
        except refused:
            state.forget(resource.kind, resource.name)
            save()
            raise

    def defer(self, action: str, kind: str, name: str, detail: str, call: Callable[..., Any], **kwargs: Any) -> None:
        """Record a mutating change now and perform it in `run_deferred` (e.g. revoking an old key only after
        the new one is verified and the files holding it are re-rendered)."""
        self.changes.append(Change(action=action, kind=kind, name=name, detail=detail))  # type: ignore[arg-type]
        self.deferred.append((call, kwargs))

    def run_deferred(self) -> None:
        """Perform the deferred changes, in order (nothing in dry-run)."""
        while self.deferred and not self.dry_run:
            call, kwargs = self.deferred.pop(0)
            call(**kwargs)

    def touched(self, *kinds: str) -> bool:
        """True when a mutating change was made to a resource of one of ``kinds``."""
        return any(c.mutating and c.kind in kinds for c in self.changes)

    @property
    def changed(self) -> bool:
        """True when any recorded change is mutating."""
        return any(c.mutating for c in self.changes)


class VerifyRow(BaseModel):
    """One probe of an issued credential.

    Attributes:
        operation: the API operation tried (``PutObject`` ...).
        target: the bucket, or bucket/key, it was tried on.
        expected: ``allow`` or ``deny``.
        actual: ``allow``, ``deny``, or ``error: <code>`` for anything else.
    """

    operation: str
    target: str
    expected: Literal["allow", "deny"]
    actual: str

    @property
    def ok(self) -> bool:
        """True when the credential did what its grant says."""
        return self.expected == self.actual


class Provider(Protocol):
    """What every provider implements. Constructors do no I/O.

    ``apply`` ensures the resources and the credential of ``profile``: it reads, routes every mutating call
    through ``plan``, records each created or adopted resource in ``state`` and calls ``save`` as soon as one
    exists (``save`` is a no-op in dry-run). It returns the Grant (None in dry-run when a new credential would be
    issued). ``verify`` probes the stored Grant's credential and returns one row per probe. ``destroy`` deletes,
    in reverse creation order, what state marks as created (never an adopted resource), forgetting each one in
    state as it goes, and returns the names of what it left in place.
    """

    name: str

    def apply(self, state: State, plan: Plan, save: Callable[[], None]) -> Grant | None:
        """Ensure the buckets and the credential of the profile.

        Args:
            state: the environment's state; created/adopted resources are recorded in it as they come to exist.
            plan: every mutating call goes through ``plan.write`` (dry-run is decided there); revocations of an
                old secret go through ``plan.defer``.
            save: persists ``state`` (a no-op in dry-run); called as soon as a resource exists.

        Returns:
            The Grant, or None in dry-run when a new credential would be issued.

        Raises:
            BadInput: invalid inputs (before any cloud call). CloudRefused: the cloud refused a call.
            PartialFailure: a call failed after resources were created (state records them).
        """
        ...

    def verify(self, state: State) -> list[VerifyRow]:
        """Probe the stored Grant's credential with real requests; one row per probe (see `VerifyRow`).

        Raises:
            BadInput: the grant has no credential that can be probed from here. CloudRefused: the admin
                credential could not set the probes up.
        """
        ...

    def destroy(self, state: State, plan: Plan, save: Callable[[], None], delete_data: bool) -> list[str]:
        """Delete, newest first, what state marks as created (never an adopted resource), forgetting each in
        state as it goes.

        Args:
            state, plan, save: as in `apply`.
            delete_data: also delete the objects of buckets `provision` created (otherwise a non-empty one is
                refused before anything is deleted).

        Returns:
            The names of adopted resources left in place.

        Raises:
            BadInput: a created bucket is not empty and ``delete_data`` is False. PartialFailure: the cloud
                refused a deletion (state keeps what still exists).
        """
        ...

    def objects(self, state: State, bucket: str, write: bool) -> Any:
        """An `provision.objects.ObjectStore` for ``bucket`` (see `provision.objects.open_store`)."""
        ...


PROVIDERS = {
    "s3": ("provision.providers.aws", "AwsProvider", "boto3", "all"),
    "azure": ("provision.providers.azure", "AzureProvider", "azure-storage-blob", "azure"),
    "gcs": ("provision.providers.gcp", "GcsProvider", "google-cloud-storage", "gcs"),
}
"""Provider name -> (module, class, the SDK package it needs, the pip extra that installs it)."""


def load_provider(profile: Profile) -> Provider:
    """The provider for ``profile.provider``, imported lazily (cloud SDKs cost 200–400 ms to import).

    Raises:
        BadInput: unknown provider. MissingExtra: its SDK is not installed (names the pip extra).
    """
    import importlib

    if profile.provider not in PROVIDERS:
        raise BadInput(f"unknown provider {profile.provider!r}", "use `provision s3`, `provision azure` or "
                       "`provision gcs`")
    module, cls, package, extra = PROVIDERS[profile.provider]
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").startswith("provision"):
            raise
        from provision.errors import MissingExtra

        raise MissingExtra(exc.name or package, extra) from None
    return getattr(loaded, cls)(profile)  # type: ignore[no-any-return]
