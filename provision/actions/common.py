"""The environment checks every action shares, and the callback type actions talk through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from provision.errors import BadInput
from provision.providers.base import VerifyRow
from provision.state import GrantState, State, StateStore

Notify = Callable[[str], None]
"""A callback receiving one line of human text (rich markup allowed) while an action runs."""
Need = Literal["file", "grant", "record"]


def _quiet(_text: str) -> None:
    """The default ``notify``: say nothing."""


# ---- the environment --------------------------------------------------------------------------------------------
def require(store: StateStore, state: State | None = None, *, need: Need = "file",
            doing: str = "provisioned") -> None:
    """Check that the environment holds what a command needs: the one "nothing provisioned" check.

    Args:
        store: the environment.
        state: its loaded state, for ``need`` ``grant`` or ``record`` (None: only the file is checked).
        need: ``file`` (a state file exists), ``grant`` (and it holds a credential), ``record`` (and it holds a
            credential or at least one resource).
        doing: the word of the first message, "nothing <doing> in environment ..." (``to verify`` ...).

    Raises:
        BadInput: the state file does not exist, or the loaded state lacks what ``need`` asks for.
    """
    env = store.env
    if not store.exists():
        raise BadInput(f"nothing {doing} in environment {env!r} yet ({store.path} does not exist)",
                       f"run `provision s3|azure|gcs --env {env} --prefix P` first")
    if state is None:
        return
    if need == "grant" and not any(g.grant is not None for g in state.grants.values()):
        raise BadInput(f"environment {env!r} has no credential yet ({store.path})",
                       f"run `provision s3|azure|gcs --env {env} ...` first")
    elif need == "record" and not any(g.grant is not None or g.resources for g in state.grants.values()):
        held = "no grant" if not state.grants else "no credential and no resource"
        raise BadInput(f"nothing provisioned in environment {env!r} ({store.path} holds {held})",
                       f"run `provision s3|azure|gcs --env {env} ...` first")


def load(env: str | StateStore, need: Need = "file") -> State:
    """The state of an environment that `require` accepts (read without the lock: for read-only commands).

    Args:
        env: the environment name, or its store.
        need: as in `require`.

    Returns:
        The loaded `provision.state.State`.

    Raises:
        BadInput: invalid environment name, corrupt state file, or what `require` raises.
    """
    store = env if isinstance(env, StateStore) else StateStore(env)
    require(store)
    state = store.load()
    require(store, state, need=need)
    return state


def _mismatches(rows: Iterable[VerifyRow]) -> str:
    """The rows that do not match the grant, as "op on target: expected X, got Y; ..."."""
    return "; ".join(f"{r.operation} on {r.target}: expected {r.expected}, got {r.actual}" for r in rows if not r.ok)


def data_grant(state: State, grant: str | None, why: str) -> GrantState:
    """The grant a data command (migrate, links, manifest, cvat attach) works on: ``grant``; else the only grant
    with a credential; else the instance storage of the last Supervisely render.

    Raises:
        BadInput: unknown ``grant``; no credential; several grants left to choose from (names them).
    """
    if grant is None:
        storages = {r.options.get("storage") for r in state.renders if r.target == "supervisely"} - {None}
        candidates = [g for g in state.grants.values() if g.grant is not None]
        if len(candidates) > 1 and len(storages) == 1:
            grant = storages.pop()
    return state.one(grant, why)


