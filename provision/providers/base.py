"""The provider base: what every provider shares (the apply and destroy skeletons, the mapping of SDK errors
to one-line `ProvisionError`s, the "which credential" rule, the verify probe runner) and the lazy registry.

Changes go through `provision.ledger.Plan` (re-exported here), which decides dry-run where writes happen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from provision.errors import BadInput, CloudRefused, PartialFailure, ProvisionError, one_line
from provision.ledger import Plan
from provision.models import Access, Grant, Resource
from provision.profiles import Profile

if TYPE_CHECKING:
    from provision.providers.owner_marks import MarkStore

__all__ = ["PROBE_AUTHS", "PROBE_WORKERS", "PROVIDERS", "BaseProvider", "Plan", "Probe", "VerifyRow",
           "grant_credential", "load_provider", "run_concurrently", "run_probes", "sdk_attempts"]


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


@dataclass
class Probe:
    """One row of a verify probe table: an operation tried with the grant's credential.

    Attributes:
        operation: the API operation (``PutObject``, ``HeadBucket`` ...), as the cloud's documentation names it.
        target: where it is tried: ``bucket``, ``bucket/key``, ``* `` or ``other (another bucket)``.
        allowed: whether the grant must allow it.
        call: performs the request with the grant's credential; its result goes to ``then``.
        then: optional clean-up with the result (e.g. abort the multipart upload the probe started).
    """

    operation: str
    target: str
    allowed: bool
    call: Callable[[], Any]
    then: Callable[[Any], None] | None = None


PROBE_WORKERS = 16
"""How many probes (and set-up / clean-up requests) run at once: verify's requests are independent and each costs
one round trip, so at WAN latency the table takes about ``len(table) / PROBE_WORKERS`` round trips."""


def run_concurrently(calls: Sequence[Callable[[], Any]], workers: int = PROBE_WORKERS) -> list[Any]:
    """Run independent calls on a bounded thread pool and wait for every one of them.

    Args:
        calls: the calls (each takes no argument; they must not depend on one another).
        workers: at most this many run at once (``PROBE_WORKERS``).

    Returns:
        Their results, in the order of ``calls`` (whatever order they finished in).

    Raises:
        The exception of the first call (in ``calls`` order) that raised one, once all have finished (so nothing
        is left running when the caller cleans up).
    """
    if not calls:
        return []
    from concurrent.futures import ThreadPoolExecutor, wait

    size = max(1, min(workers, len(calls)))
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="provision-probe") as pool:
        futures = [pool.submit(call) for call in calls]
        wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


def run_probes(probes: Iterable[Probe], outcome: Callable[[BaseException], str | None],
               workers: int = PROBE_WORKERS) -> list[VerifyRow]:
    """Run a probe table concurrently (`run_concurrently`, at most ``workers`` at once) and return one
    `VerifyRow` per probe, in table order.

    The probes of a table must be independent of one another: no probe may read, overwrite or delete what
    another probe touches (each gets its own object, put by the provider's set-up before the table runs).

    Args:
        probes: the table (materialised before the first probe runs).
        outcome: classifies an exception raised by a probe: ``"deny"`` for the cloud's access-denied answers,
            ``"error: <code>"`` for any other answer of the service; None when it is not the service's answer
            (then it propagates).
        workers: at most this many probes at once.

    Returns:
        The rows, in table order (deterministic, whatever order the probes finished in).

    Raises:
        The first (in table order) exception that ``outcome`` does not classify, or that a probe's ``then``
        raised, once every probe has finished.
    """

    def run(probe: Probe) -> VerifyRow:
        result = None
        try:
            result = probe.call()
            actual = "allow"
        except Exception as exc:  # classified below; anything that is not the service's answer propagates
            verdict = outcome(exc)
            if verdict is None:
                raise
            actual = verdict
        if probe.then is not None and result is not None:
            probe.then(result)
        return VerifyRow(operation=probe.operation, target=probe.target,
                         expected="allow" if probe.allowed else "deny", actual=actual)

    return run_concurrently([partial(run, probe) for probe in probes], workers)


def grant_credential(grant: Grant | None, write: bool) -> Any:
    """The grant's own credential when it can do a data job from this machine, else None (use the admin's).

    It can when it is a key pair, a SAS or a key file (a role or an ambient identity lives on the platform's
    machine) and, for writes, when the grant is ``full``.

    Returns:
        The grant's ``auth`` (`provision.models.KeyPair` | `SasToken` | `KeyFile`), or None.
    """
    if grant is None or grant.auth.kind not in PROBE_AUTHS:
        return None
    if write and grant.access != Access.full:
        return None
    return grant.auth


SDK_ATTEMPTS_ENV = "PROVISION_SDK_ATTEMPTS"


def sdk_attempts() -> int | None:
    """``$PROVISION_SDK_ATTEMPTS``: how many times each SDK request is tried in all (the first included), for
    every provider's client seam; None when unset or empty (each SDK's default retry policy applies).

    Raises:
        BadInput: set to something other than a whole number ≥ 1.
    """
    import os

    raw = os.environ.get(SDK_ATTEMPTS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadInput(f"{SDK_ATTEMPTS_ENV}={raw!r} is not a whole number of attempts ≥ 1",
                       f"unset {SDK_ATTEMPTS_ENV}, or set it to e.g. 3")
    return int(raw)


PROBE_AUTHS = ("key_pair", "sas", "key_file")
"""Credential kinds `verify` and the data commands can use from here (a role or an ambient identity lives on the
platform's VM)."""


class BaseProvider(ABC):
    """What every provider shares. A provider subclasses it and implements `ensure`, `delete_resource`,
    `holds_objects`, `verify` and `objects`, and names its SDK's error types. Constructors do no I/O.

    Args:
        profile: the validated inputs of the run.

    Class attributes:
        name: ``s3`` | ``azure`` | ``gcs``.
        service: how messages name the cloud (``AWS``, ``Azure``, ``Google Cloud``).
        bucket_kinds: resource kinds holding objects (``destroy`` refuses a non-empty one without
            ``--delete-data``).
    """

    name: str = ""
    service: str = ""
    bucket_kinds: tuple[str, ...] = ("bucket",)

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def resolved_inputs(self) -> dict[str, Any]:
        """The inputs to store in state for this run (no secrets): the profile, as the provider resolved it (e.g.
        Azure's connection string without its key). Default: the profile as given."""
        return self.profile.model_dump(mode="json")

    # ---- the SDK's errors -----------------------------------------------------------------------------------
    @abstractmethod
    def refused_errors(self) -> tuple[type[BaseException], ...]:
        """The SDK's exception types for "the service answered with an error" (imported lazily)."""

    def unreachable_errors(self) -> tuple[type[BaseException], ...]:
        """The SDK's exception types for "no answer at all" (connection refused, DNS, timeout)."""
        return ()

    def describe(self, exc: BaseException) -> str:
        """One line describing an SDK error (its code and message, no traceback, no secret)."""
        return one_line(exc)

    def missing_credentials(self, exc: BaseException) -> ProvisionError | None:
        """The error to report when ``exc`` means the admin credentials are missing, else None."""
        return None

    # ---- apply ----------------------------------------------------------------------------------------------
    @abstractmethod
    def ensure(self, state: Any, plan: Plan) -> Grant | None:
        """Ensure the buckets and the credential of the profile, every change through ``plan``.

        Args:
            state: the grant's record (read it; change it only through ``plan``).
            plan: the ledger.

        Returns:
            The Grant, or None in a dry run when a new credential would be issued.
        """

    def apply(self, state: Any, plan: Plan) -> Grant | None:
        """`ensure`, with the SDK's errors mapped once: a refusal before anything was created is `CloudRefused`
        (exit 3), after something was created `PartialFailure` (exit 4; state records it).

        Raises:
            BadInput: invalid inputs (before any cloud call). CloudRefused, PartialFailure: as above.
        """
        before = plan.created_count()
        try:
            return self.ensure(state, plan)
        except ProvisionError:
            raise
        except self.refused_errors() + self.unreachable_errors() as exc:
            missing = self.missing_credentials(exc)
            if missing is not None:
                raise missing from None
            message = f"{self.service} refused: {self.describe(exc)}"
            if isinstance(exc, self.unreachable_errors()):
                message = f"{self.service} could not be reached: {self.describe(exc)}"
            if plan.created_count() > before:
                raise PartialFailure(message, "state records what was created; re-run or `provision destroy`") \
                    from None
            hint = ("check the endpoint and the network" if isinstance(exc, self.unreachable_errors())
                    else "check the admin credentials' permissions and the names")
            raise CloudRefused(message, hint) from None

    # ---- destroy --------------------------------------------------------------------------------------------
    @abstractmethod
    def holds_objects(self, state: Any, resource: Resource) -> bool:
        """True when the bucket/container ``resource`` still holds objects (False when it is gone)."""

    @abstractmethod
    def delete_resource(self, state: Any, resource: Resource, plan: Plan, delete_data: bool) -> None:
        """Delete one created resource through ``plan`` (one that is already gone counts as deleted: note it)."""

    def mark_store(self, state: Any) -> MarkStore | None:
        """The owner-mark reader/writer `destroy` hands resources over with (`provision.providers.owner_marks`);
        None when this provider has none, or ``state`` adopted nothing that could carry share marks (so destroy
        makes no mark request). The base has none."""
        return None

    def destroy(self, state: Any, plan: Plan, delete_data: bool) -> list[str]:
        """Delete, newest first, what state marks as created (never an adopted resource), forgetting each in
        state as it goes; before that, take over what another state handed over to this one
        (`provision.providers.owner_marks.take_over`), and after it drop this state's share marks from what it
        adopted (`provision.providers.owner_marks.leave`), both through `mark_store`.

        Args:
            state: the grant's record. plan: the ledger.
            delete_data: also delete the objects of buckets `provision` created (otherwise a non-empty one is
                refused before anything is deleted).

        Returns:
            The names (``kind name``) of adopted resources left in place.

        Raises:
            BadInput: a created bucket is not empty and ``delete_data`` is False. PartialFailure: the cloud
                refused a deletion or a mark's read or change (state keeps what still exists).
        """
        from provision.providers.owner_marks import leave, take_over

        self._marks(take_over, plan, state)
        kept = self._delete_created(state, plan, delete_data)
        self._marks(leave, plan, state)
        return kept

    def _marks(self, step: Callable[[Plan, Any, MarkStore], Any], plan: Plan, state: Any) -> None:
        """Run ``step(plan, state, store)`` with `mark_store` (nothing when it is None); the cloud's refusal
        becomes `PartialFailure`."""
        try:
            store = self.mark_store(state)
            if store is not None:
                step(plan, state, store)
        except ProvisionError:
            raise
        except self.refused_errors() + self.unreachable_errors() as exc:
            raise PartialFailure(f"{self.service} refused an owner-mark read or change: {self.describe(exc)}",
                                 "state keeps what still exists; fix the cause and run destroy again") from None

    def _delete_created(self, state: Any, plan: Plan, delete_data: bool) -> list[str]:
        """The deletions of `destroy`. Returns the adopted resources left in place (``kind name``)."""
        ours = [r for r in reversed(state.resources) if r.created]
        try:
            if not delete_data:
                for r in ours:
                    if r.kind in self.bucket_kinds and self.holds_objects(state, r):
                        raise BadInput(f"{r.kind} {r.name!r} (created by provision) still holds objects",
                                       "pass --delete-data to delete them with it, or empty it first")
            kept = [f"{r.kind} {r.name}" for r in state.resources if not r.created]
            for r in ours:
                self.delete_resource(state, r, plan, delete_data)
                plan.forget(r.kind, r.name)
        except ProvisionError:
            raise
        except self.refused_errors() + self.unreachable_errors() as exc:
            raise PartialFailure(f"{self.service} refused a deletion: {self.describe(exc)}",
                                 "state keeps what still exists; fix the cause and run destroy again") from None
        return kept

    # ---- verify and data ------------------------------------------------------------------------------------
    @abstractmethod
    def verify(self, state: Any) -> list[VerifyRow]:
        """Probe the stored Grant's credential with real requests (a `Probe` table run by `run_probes`).

        Raises:
            BadInput: the grant has no credential that can be probed from here. CloudRefused: the admin
                credential could not set the probes up.
        """

    @abstractmethod
    def objects(self, state: Any, bucket: str, write: bool) -> Any:
        """An `provision.objects.ObjectStore` for ``bucket``, with `grant_credential` (else the admin's)."""


PROVIDERS = {
    "s3": ("provision.providers.aws.provider", "AwsProvider", "boto3", "all"),
    "azure": ("provision.providers.azure.provider", "AzureProvider", "azure-storage-blob", "azure"),
    "gcs": ("provision.providers.gcp.provider", "GcsProvider", "google-cloud-storage", "gcs"),
}
"""Provider name -> (module, class, the SDK package it needs, the pip extra that installs it)."""


def load_provider(profile: Profile) -> BaseProvider:
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
