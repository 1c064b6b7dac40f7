"""The ledger of one run: the one place that owns the state being changed, its saving, and dry-run.

Providers read the cloud freely and route every change through a `Plan`: each method records the change for the
report and, unless the run is a dry run, performs the call and persists what it means for the state file at once
(intent before a create, the record of an adopted resource, the Grant holding a freshly issued secret). Providers
never look at ``dry_run`` and never edit the change list: there is no second "would create" code path to drift
from the real one (the idea of copier's ``pretend``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from provision.models import Change, Grant, Resource

T = TypeVar("T")


class GrantRecord(Protocol):
    """What a provider sees of the state: one grant's record (``env``, ``grant``, ``inputs``, ``resources``)."""

    env: str
    grant: Grant | None
    resources: list[Resource]

    def find(self, kind: str, name: str) -> Resource | None: ...
    def record(self, resource: Resource) -> None: ...
    def forget(self, kind: str, name: str) -> None: ...


class Plan:
    """Records the changes of one run and performs the mutating calls unless ``dry_run``.

    Args:
        state: the grant record the run changes (`provision.state.State`); resources and the Grant are recorded
            in it as they come to exist.
        save: persists ``state``; never called in a dry run. None: nothing is persisted (e.g. ``status``).
        dry_run: record the changes, call nothing, persist nothing.
        rotate: issue a new secret even when the stored one still works (``--rotate``); an input providers read.

    Attributes:
        changes: the changes recorded so far, in order (read them; change them only through the methods).
        dry_run: for the command that prints the report; providers never read it.
    """

    def __init__(self, state: Any, save: Callable[[], None] | None = None, *, dry_run: bool = False,
                 rotate: bool = False) -> None:
        self.state = state
        self._save = save
        self.dry_run = dry_run
        self.rotate = rotate
        self.changes: list[Change] = []
        self.deferred: list[tuple[Callable[..., Any], dict[str, Any]]] = []

    # ---- persistence ----------------------------------------------------------------------------------------
    def save(self) -> None:
        """Persist the state now (nothing in a dry run)."""
        if not self.dry_run and self._save is not None:
            self._save()

    def record(self, resource: Resource) -> None:
        """Add ``resource`` to the state (or refresh its record) and persist it; nothing in a dry run."""
        if not self.dry_run:
            self.state.record(resource)
            self.save()

    def forget(self, kind: str, name: str) -> None:
        """Drop the record of a resource that no longer exists and persist it; nothing in a dry run."""
        if not self.dry_run:
            self.state.forget(kind, name)
            self.save()

    def set_grant(self, grant: Grant | None) -> None:
        """Store ``grant`` (None: the stored credential is no longer valid) and persist it; nothing in a dry
        run."""
        if not self.dry_run:
            self.state.grant = grant
            self.save()

    # ---- changes --------------------------------------------------------------------------------------------
    def note(self, action: str, kind: str, name: str, detail: str = "") -> None:
        """Record a line of the report that needs no mutating call (``no change``; an ``issue`` or ``update``
        that is due but cannot be made, explained in ``detail``)."""
        self.changes.append(Change(action=action, kind=kind, name=name, detail=detail))  # type: ignore[arg-type]

    def adopt(self, resource: Resource, detail: str = "exists; adopted (destroy never deletes it)") -> bool:
        """Take an existing resource into the state as adopted (``created=False``), once.

        Returns:
            True when it was not recorded yet (an ``adopt`` line is added and the state persisted); False when
            the state already knows it (nothing recorded).
        """
        if self.state.find(resource.kind, resource.name) is not None:
            return False
        self.note("adopt", resource.kind, resource.name, detail)
        self.record(resource.model_copy(update={"created": False}))
        return True

    def _perform(self, action: str, kind: str, name: str, detail: str, call: Callable[..., T],
                 kwargs: dict[str, Any]) -> T | None:
        if self.dry_run:
            self.note(action, kind, name, detail)
            return None
        result = call(**kwargs)
        self.note(action, kind, name, detail)  # after the call: a refused call is not reported as done
        return result

    def create(self, resource: Resource, detail: str, call: Callable[..., T],
               refused: tuple[type[BaseException], ...] = (), *, shown: str | None = None, **kwargs: Any) -> T | None:
        """Create ``resource``, recording it in the state *before* the call (a crash after the cloud created it
        but before we heard back leaves it tracked) and forgetting it again when the cloud answers with one of
        ``refused`` (it then did not create it). A connection failure or an interrupt keeps the record: the
        resource may exist, and a re-run or ``destroy`` settles it.

        Args:
            resource: the record (``created=True``).
            detail: as in `Change`.
            call: the SDK's create method, called as ``call(**kwargs)``.
            refused: the SDK's "the service answered with an error" exception types.
            shown: the name the report shows, when not ``resource.name`` (e.g. ``owner/policy``).

        Returns:
            The call's result, or None in a dry run.

        Raises:
            Whatever ``call`` raises.
        """
        self.record(resource)
        try:
            return self._perform("create", resource.kind, shown or resource.name, detail, call, kwargs)
        except refused:
            self.forget(resource.kind, resource.name)
            raise

    def update(self, kind: str, name: str, detail: str, call: Callable[..., T], **kwargs: Any) -> T | None:
        """Change an existing resource: ``call(**kwargs)`` unless dry run. Returns its result (None in a dry run).
        Raises whatever ``call`` raises (the change is then not reported)."""
        return self._perform("update", kind, name, detail, call, kwargs)

    def delete(self, kind: str, name: str, detail: str, call: Callable[..., T], *,
               forget: tuple[str, str] | None = None, **kwargs: Any) -> T | None:
        """Delete something: ``call(**kwargs)`` unless dry run; then forget ``forget`` (kind, name) in the state.

        Returns:
            The call's result (None in a dry run). Raises whatever ``call`` raises.
        """
        result = self._perform("delete", kind, name, detail, call, kwargs)
        if forget is not None:
            self.forget(*forget)
        return result

    def issue(self, kind: str, owner: str, detail: str, call: Callable[..., T],
              keep: Callable[[T], tuple[Resource | None, Grant | None]], **kwargs: Any) -> T | None:
        """Issue a new secret and persist it at once: the secret exists only in the call's answer.

        Args:
            kind: the secret's resource kind (``access_key``, ``sa_key``, ``sas`` ...).
            owner: who the secret belongs to (shown until the secret's id is known).
            detail: as in `Change`.
            call: the SDK call that issues it, called as ``call(**kwargs)``.
            keep: turns the answer into the secret's record (its id, never the secret; None for a secret the cloud
                keeps no record of, e.g. an Azure SAS) and the Grant holding it (None when the caller sets it later);
                both are persisted before this returns.

        Returns:
            The call's answer, or None in a dry run.

        Raises:
            Whatever ``call`` or ``keep`` raises.
        """
        if self.dry_run:
            self.note("issue", kind, owner, detail)
            return None
        answer = call(**kwargs)
        resource, grant = keep(answer)
        if resource is not None:
            self.state.record(resource)
        if grant is not None:
            self.state.grant = grant
        self.save()
        self.note("issue", kind, resource.name if resource is not None else owner, detail)
        return answer

    def blocked(self, error: Exception, kind: str, name: str) -> None:
        """A change is due but cannot be made: in a dry run it is reported (``issue`` with the error as detail)
        so the plan shows it; otherwise ``error`` is raised."""
        if not self.dry_run:
            raise error
        self.note("issue", kind, name, str(error))

    def planned(self, kind: str, name: str) -> bool:
        """True when this run planned to create ``kind``/``name`` but has not (a dry run): reads of it are
        expected to find nothing."""
        return self.dry_run and any(c.action == "create" and c.kind == kind and c.name == name
                                    for c in self.changes)

    def defer(self, action: str, kind: str, name: str, detail: str, call: Callable[..., Any], **kwargs: Any) -> None:
        """Record a mutating change now and perform it in `run_deferred` (e.g. revoking an old key only after
        the new one is verified and the files holding it are re-rendered)."""
        self.note(action, kind, name, detail)
        self.deferred.append((call, kwargs))

    def run_deferred(self) -> None:
        """Perform the deferred changes, in order (nothing in a dry run)."""
        while self.deferred and not self.dry_run:
            call, kwargs = self.deferred.pop(0)
            call(**kwargs)

    def deleted(self, name: str) -> bool:
        """True when a ``delete`` of something named ``name`` is already in this run's changes."""
        return any(c.action == "delete" and c.name == name for c in self.changes)

    def created_count(self) -> int:
        """How many resources the state marks as created by `provision` (to tell a refusal before anything
        existed from a partial failure)."""
        return sum(1 for r in self.state.resources if r.created)

    def touched(self, *kinds: str) -> bool:
        """True when a mutating change was made to a resource of one of ``kinds``."""
        return any(c.mutating and c.kind in kinds for c in self.changes)

    @property
    def changed(self) -> bool:
        """True when any recorded change is mutating."""
        return any(c.mutating for c in self.changes)
