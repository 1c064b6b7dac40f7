"""``provision verify`` and ``provision status``: what each grant's credential does, and drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provision.actions.common import load, require
from provision.errors import VerifyFailed
from provision.lifecycle import drift, probeable
from provision.models import Grant, Resource
from provision.profiles import Profile
from provision.providers.base import VerifyRow, load_provider
from provision.state import State, StateStore


# ---- verify, status ---------------------------------------------------------------------------------------------
@dataclass
class GrantProbes:
    """The probes of one grant.

    Attributes:
        name: the grant's name.
        grant: the Grant probed.
        uses: what the platforms do with it, as checked (``instance storage``, ``links connection``, ``cvat``).
        rows: one `provision.providers.base.VerifyRow` per probe; empty when ``skipped``.
        skipped: why it was not probed (a role or keyless grant lives on the platform's machine), or None.
    """

    name: str
    grant: Grant
    uses: list[str]
    rows: list[VerifyRow]
    skipped: str | None = None


@dataclass
class VerifyResult:
    """The probes of `verify`, per grant.

    Attributes:
        env: the environment name.
        grants: one `GrantProbes` per grant checked, in the environment's order.
    """

    env: str
    grants: list[GrantProbes]

    @property
    def rows(self) -> list[VerifyRow]:
        """Every probe of every grant."""
        return [r for g in self.grants for r in g.rows]

    @property
    def ok(self) -> bool:
        """True when every probe matches its grant."""
        return all(r.ok for r in self.rows)

    def check(self) -> None:
        """Raise `VerifyFailed` (exit 5) naming each mismatching probe, unless all match."""
        bad = [(g.name, r) for g in self.grants for r in g.rows if not r.ok]
        if bad:
            raise VerifyFailed(f"{len(bad)} probe(s) do not match their grant: " + "; ".join(
                f"{name}: {r.operation} on {r.target}: expected {r.expected}, got {r.actual}" for name, r in bad),
                "re-run the provision command of that grant to restore its policy, then verify again")


def uses_of(state: State, name: str) -> list[str]:
    """What the platforms do with grant ``name``, from the recorded renders: ``instance storage`` or ``links
    connection`` (Supervisely), ``cvat`` (``render-env --target cvat``); ``links connection`` when never rendered."""
    uses: list[str] = []
    for record in state.renders:
        if record.target == "supervisely":
            uses.append("instance storage" if record.options.get("storage") == name else "links connection")
        elif record.target == "cvat" and record.options.get("grant", name) == name:
            uses.append("cvat")
    return sorted(set(uses)) or ["links connection"]


def verify(store: StateStore, grant: str | None = None) -> VerifyResult:
    """Probe each stored credential: what it should do succeeds, everything else is denied. Grants whose
    credential cannot be used from here (an IAM role, keyless) are listed as skipped.

    Args:
        store: the environment.
        grant: only this grant (``--grant``).

    Returns:
        The `VerifyResult` (call ``check()`` to turn mismatches into `VerifyFailed`).

    Raises:
        BadInput: nothing provisioned, no credential, unknown grant.
        CloudRefused: the admin side of a probe was refused.
    """
    require(store, doing="to verify")
    state = store.load()
    require(store, state, need="grant")
    found: list[GrantProbes] = []
    for record in state.select(grant):
        if record.grant is None:
            continue
        probes = GrantProbes(name=record.name, grant=record.grant, uses=uses_of(state, record.name), rows=[])
        if not probeable(record.grant):
            probes.skipped = f"{record.grant.auth.kind}: used on the platform's machine, not from here"
        found.append(probes)

    def run(probes: GrantProbes) -> None:
        if probes.skipped is None:
            record = state.grants[probes.name]
            probes.rows = load_provider(Profile.model_validate(record.inputs)).verify(record)

    each_grant(run, found)
    return VerifyResult(env=store.env, grants=found)


GRANT_WORKERS = 4
"""Grants checked at once by `verify` and `status` (each grant's own probes run concurrently too)."""


def each_grant(work: Any, items: list[Any]) -> list[Any]:
    """``work(item)`` for every item, up to `GRANT_WORKERS` at once; results in the items' order. The first
    exception (in the items' order) is raised after all finished."""
    if len(items) <= 1:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(GRANT_WORKERS, len(items))) as pool:
        futures = [pool.submit(work, item) for item in items]
    return [future.result() for future in futures]


@dataclass
class StatusResult:
    """What `status` found.

    Attributes:
        env: the environment name.
        resources: every resource the state records (of the grants checked).
        rows: the drift, one ``{"grant", "resource", "name", "problem", "fix"}`` per finding
            (`provision.lifecycle.drift`).
    """

    env: str
    resources: list[Resource]
    rows: list[dict[str, str]]

    @property
    def in_sync(self) -> bool:
        """True when the cloud matches the state file."""
        return not self.rows


def status(store: StateStore, grant: str | None = None) -> StatusResult:
    """Compare the live resources with the state file (read-only calls only), per grant: missing, drifted, extra,
    or a credential expiring soon, each with the command that fixes it.

    Raises:
        BadInput: nothing provisioned; unknown grant.
        CloudRefused: the admin credential cannot read the resources.
    """
    state = load(store, need="record")
    rows: list[dict[str, str]] = []
    resources: list[Resource] = []
    records = state.select(grant)
    for record in records:
        resources += record.resources

    def check(record: Any) -> list[dict[str, str]]:
        if record.provider is None:
            return []
        return [{"grant": record.name, **row}
                for row in drift(load_provider(Profile.model_validate(record.inputs)), record)]

    for found in each_grant(check, records):
        rows += found
    return StatusResult(env=store.env, resources=resources, rows=rows)


