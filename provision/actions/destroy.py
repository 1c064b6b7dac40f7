"""``provision destroy``: delete what provision created, per grant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.actions.common import require
from provision.errors import BadInput
from provision.ledger import Plan
from provision.lifecycle import rerender
from provision.models import Change
from provision.profiles import Profile
from provision.providers.base import load_provider
from provision.state import GrantState, State, StateStore


# ---- destroy ----------------------------------------------------------------------------------------------------
@dataclass
class DestroyResult:
    """What `destroy` deleted (or would delete).

    Attributes:
        env, dry_run: as given.
        changes: the deletions, newest resource first.
        kept: adopted resources left in place ("kind name").
        rendered: directories of rendered files that still point at what was deleted: every recorded render when
            no grant is left, else the Supervisely installs whose instance storage (``.env``) was destroyed (their
            ``.env`` is left as it is; empty in a dry run).
        grants: the grants destroyed.
        rerendered: files re-rendered without the destroyed grants (their Links connections and mounts removed).
    """

    env: str
    dry_run: bool
    changes: list[Change]
    kept: list[str]
    rendered: list[str]
    grants: list[str] = field(default_factory=list)
    rerendered: list[Path] = field(default_factory=list)


def destroy_plan(state: State, grant: str | None) -> list[str]:
    """What ``destroy`` would delete, one line per grant: ``<grant>: <kind> <name>, ...`` (created resources,
    newest first), for the confirmation prompt. Raises BadInput for an unknown grant."""
    lines = []
    for record in state.select(grant):
        ours = [f"{r.kind} {r.name}" for r in reversed(record.resources) if r.created]
        lines.append(f"{record.name}: {', '.join(ours) or 'nothing created by provision'}")
    return lines


def destroy(store: StateStore, *, grant: str | None = None, yes: bool = False, delete_data: bool = False,
            dry_run: bool = False, confirm: Callable[[str], Any] | None = None) -> DestroyResult:
    """Delete, newest first, what provision created for the environment's grants (or only ``grant``); never what
    it adopted. A bucket another grant of the environment still uses is handed over to that grant instead of being
    deleted. Recorded Supervisely renders are repeated without the destroyed grants (their Links connections and
    key mounts go). When no grant is left, the state file and migrate's checksum cache
    (`provision.migrate_cache.cache_path`) go too.

    Args:
        store: the environment.
        grant: only this grant (``--grant``).
        yes: do not ask for confirmation.
        delete_data: also delete the objects in buckets provision created (else a non-empty bucket stays).
        dry_run: list the deletions; delete nothing.
        confirm: asks the user ``confirm(question)`` when neither ``yes`` nor ``dry_run`` (it raises to abort);
            None when there is no one to ask.

    Returns:
        The `DestroyResult`.

    Raises:
        BadInput: nothing provisioned; unknown grant; confirmation needed and ``confirm`` is None.
        CloudRefused, PartialFailure: raised by the provider (the state keeps what still exists).
    """
    require(store)
    if not yes and not dry_run:
        if confirm is None:
            raise BadInput("destroy needs confirmation and there is no terminal to ask", "pass --yes")
        listing = "\n  ".join(destroy_plan(store.load(), grant))
        confirm(f"Delete what provision created in environment {store.env!r}?\n  {listing}\n")
    changes: list[Change] = []
    kept: list[str] = []
    done: list[str] = []
    rerendered: list[Path] = []
    with store.lock():
        state = store.load()
        for record in reversed(state.select(grant)):
            _hand_over_shared(state, record, dry_run)
            plan = Plan(record, lambda: store.save(state), dry_run=dry_run)
            if record.provider is not None:
                kept += load_provider(Profile.model_validate(record.inputs)).destroy(record, plan, delete_data)
            changes += plan.changes
            done.append(record.name)
            if not dry_run:
                plan.set_grant(None)
                if not record.resources:
                    del state.grants[record.name]
                store.save(state)
        rendered = [r.out for r in state.renders]
        if state.grants:  # the install's .env still holds the destroyed instance storage's credential
            rendered = [r.out for r in state.renders if r.target == "supervisely" and r.options.get("storage") in done]
        if not dry_run:
            if state.grants:
                rerendered = rerender(state)
                store.save(state)
            else:
                from provision.migrate_cache import cache_path

                store.delete()
                cache_path(store.env).unlink(missing_ok=True)  # migrate's checksums for buckets that are gone
    return DestroyResult(env=store.env, dry_run=dry_run, changes=changes, kept=kept,
                         rendered=rendered if not dry_run else [], grants=done,
                         rerendered=rerendered)


def _hand_over_shared(state: State, record: GrantState, dry_run: bool) -> None:
    """Before ``record`` is destroyed: a bucket it created that another grant of the environment also records is
    handed over to that grant (recorded there as created) instead of being deleted under it."""
    for resource in [r for r in record.resources if r.created and r.kind in ("bucket", "container")]:
        heirs = [g for g in state.grants.values() if g is not record and g.find(resource.kind, resource.name)]
        if heirs and not dry_run:
            heirs[0].record(resource.model_copy(update={"created": True}))
            record.forget(resource.kind, resource.name)
        elif heirs:
            record.resources = [r for r in record.resources if r is not resource]


