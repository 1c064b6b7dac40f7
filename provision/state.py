"""Per-environment state: ``<state dir>/<env>.json`` (mode 0600) holds the environment's named grants, each with
its Grant and every resource created or adopted for it, written as soon as each resource exists, so a re-run or
``destroy`` can always finish the job. The state directory is found as git finds ``.git`` (`state_dir`)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from provision.errors import BadInput
from provision.files import atomic_write, remove_orphan_temporaries
from provision.models import Grant, Resource
from provision.names import check_env_name

STATE_VERSION = 2
"""The state file format this code writes. Version 1 (one grant per env) is read and rewritten as 2."""

STATE_DIR_NAME = ".provision"

_GRANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def state_dir(start: Path | None = None) -> Path:
    """The state directory, found as git finds ``.git``: ``$PROVISION_STATE_DIR``; else the nearest
    ``.provision/`` directory in ``start`` (default: the working directory) or one of its parents; else the
    per-user state directory (platformdirs' ``user_state_path("provision")``, e.g. ``~/.local/state/provision``).

    Returns:
        An absolute path (it may not exist yet).
    """
    explicit = os.environ.get("PROVISION_STATE_DIR")
    if explicit:
        return Path(explicit).absolute()
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / STATE_DIR_NAME
        if candidate.is_dir():
            return candidate
    from platformdirs import user_state_path

    return user_state_path("provision").absolute()


def check_grant_name(name: str) -> str:
    """Check a grant name (``--grant``; also the Links connection name in ``remote_links.yml``).

    Rule (ours): 1–63 characters of ``a-z 0-9 - _``, starting with a letter or digit.

    Raises:
        BadInput: the name breaks the rule.
    """
    if not isinstance(name, str) or not _GRANT_NAME.match(name):
        raise BadInput(f"invalid --grant {name!r}: use 1–63 of a-z, 0-9, '-' and '_', starting with a letter or digit",
                       "e.g. --grant storage or --grant datasets")
    return name


def default_grant_name(prefix: str | None, buckets: list[str]) -> str:
    """The grant name when ``--grant`` is not given: the prefix, else the first bucket/container, lowered and
    with characters outside the grant-name rule (e.g. the dots of a bucket name) turned into ``-``.

    Raises:
        BadInput: neither a prefix nor a bucket is given.
    """
    source = prefix or (buckets[0] if buckets else "")
    if not source:
        raise BadInput("no bucket and no --prefix given", "pass bucket names or --prefix P")
    name = re.sub(r"[^a-z0-9_-]", "-", source.lower()).strip("-_")[:63] or "grant"
    return check_grant_name(name)


class RenderRecord(BaseModel):
    """One ``render-env`` run to repeat when a secret changes (``--rotate``).

    Attributes:
        target: ``supervisely`` | ``cvat`` | ``onepanel``.
        out: absolute output directory.
        options: the render options given (connection name, ...), as strings.
    """

    model_config = ConfigDict(extra="forbid")

    target: str
    out: str
    options: dict[str, Any] = Field(default_factory=dict)


class GrantState(BaseModel):
    """One named grant of an environment: its inputs, its credential and the resources made or adopted for it.

    This is what a provider works on (``env``, ``grant``, ``inputs``, ``resources``, ``find``; changes go
    through `provision.ledger.Plan`).

    Attributes:
        name: the grant's name (set from its key in `State.grants`; not stored twice).
        env: the environment's name (set by `State`; not stored twice).
        state_id: the environment state's random id (set by `State`), for owner marks on what it creates.
        provider: ``s3`` | ``azure`` | ``gcs``, or None before the first apply.
        inputs: the validated profile of the last apply (no secrets), used to spot a changed re-run.
        grant: the Grant, or None until a credential exists.
        resources: every resource created or adopted for this grant, in creation order.
        migrated: Supervisely ``DATA_PATH`` -> UTC start of the last ``provision migrate`` from it into this
            grant's buckets that uploaded every file.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", exclude=True)
    env: str = Field("", exclude=True)
    state_id: str = Field("", exclude=True)
    provider: Literal["s3", "azure", "gcs"] | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    grant: Grant | None = None
    resources: list[Resource] = Field(default_factory=list)
    migrated: dict[str, datetime] = Field(default_factory=dict)

    def find(self, kind: str, name: str) -> Resource | None:
        """The recorded resource of ``kind`` named ``name``, or None."""
        return next((r for r in self.resources if r.kind == kind and r.name == name), None)

    def record(self, resource: Resource) -> None:
        """Add ``resource``, or refresh the record of the same kind and name (keeping ``created`` if it was
        True)."""
        old = self.find(resource.kind, resource.name)
        if old is None:
            self.resources.append(resource)
        else:
            old.created = old.created or resource.created
            old.parent = resource.parent or old.parent

    def forget(self, kind: str, name: str) -> None:
        """Drop the record of a resource that no longer exists."""
        self.resources = [r for r in self.resources if not (r.kind == kind and r.name == name)]


class State(BaseModel):
    """What `provision` knows about one environment (one platform install): its named grants.

    Attributes:
        version: the file format (`STATE_VERSION`).
        env: the environment name.
        state_id: a random id of this state, marked on what it creates.
        grants: grant name -> `GrantState`, in the order they were first applied.
        renders: the ``render-env`` runs made from this environment (repeated after a rotation).
        updated_at: UTC time of the last save.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = STATE_VERSION
    env: str
    state_id: str = Field(default_factory=lambda: secrets.token_hex(8))
    grants: dict[str, GrantState] = Field(default_factory=dict)
    renders: list[RenderRecord] = Field(default_factory=list)
    updated_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any) -> Any:
        """A version-1 document (one grant per env) becomes one grant named after its prefix or first bucket."""
        if not isinstance(data, dict) or data.get("version", STATE_VERSION) != 1:
            return data
        data = dict(data)
        grant_fields = {k: data.pop(k) for k in ("provider", "inputs", "grant", "resources") if k in data}
        data["version"] = STATE_VERSION
        inputs = grant_fields.get("inputs") or {}
        grant = grant_fields.get("grant") or {}
        buckets = inputs.get("buckets") or grant.get("buckets") or []
        if grant_fields.get("provider") or grant_fields.get("resources"):
            name = default_grant_name(inputs.get("prefix"), buckets) if (inputs.get("prefix") or buckets) \
                else "default"
            data["grants"] = {name: grant_fields}
        return data

    @model_validator(mode="after")
    def _names(self) -> State:
        for name, record in self.grants.items():
            check_grant_name(name)
            record.name, record.env, record.state_id = name, self.env, self.state_id
        return self

    def grant_state(self, name: str) -> GrantState:
        """The grant named ``name``, added empty when the environment does not hold it yet."""
        check_grant_name(name)
        if name not in self.grants:
            self.grants[name] = GrantState(name=name, env=self.env, state_id=self.state_id)
        return self.grants[name]

    def select(self, name: str | None) -> list[GrantState]:
        """The grants a command works on: all of them, or the one named ``name`` (``--grant``).

        Raises:
            BadInput: ``name`` is not a grant of this environment (the message lists the grants it holds).
        """
        if name is None:
            return list(self.grants.values())
        if name not in self.grants:
            raise BadInput(f"environment {self.env!r} holds no grant {name!r} (it holds: {self.names()})",
                           "pass one of those to --grant")
        return [self.grants[name]]

    def one(self, name: str | None, why: str) -> GrantState:
        """The one grant a command needs: ``name``, or the only grant of the environment.

        Args:
            name: ``--grant``, or None.
            why: what needs exactly one grant (for the message), e.g. ``cvat attach``.

        Raises:
            BadInput: ``name`` is unknown, the environment has no grant, or it has several and ``name`` is None
                (the message lists them).
        """
        chosen = [g for g in self.select(name) if g.grant is not None] if name is None else self.select(name)
        if len(chosen) == 1:
            return chosen[0]
        if not chosen:
            raise BadInput(f"environment {self.env!r} has no credential yet",
                           f"run `provision s3|azure|gcs --env {self.env} ...` first")
        raise BadInput(f"{why} needs one grant and environment {self.env!r} holds {len(chosen)}: {self.names()}",
                       "pass --grant NAME")

    def names(self) -> str:
        """The grant names, comma-separated (``none`` when there is none)."""
        return ", ".join(self.grants) or "none"

    def remember_render(self, record: RenderRecord) -> bool:
        """Record a render-env run (one per target and directory). Returns True when the record is new or changed."""
        old = next((r for r in self.renders if r.target == record.target and r.out == record.out), None)
        if old == record:
            return False
        if old is not None:
            self.renders.remove(old)
        self.renders.append(record)
        return True


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 whatever the umask; an existing directory is left as it is.

    Raises:
        BadInput: ``path`` exists and is not a directory.
    """
    if path.is_dir():
        return path
    if path.exists():
        raise BadInput(f"{path} exists and is not a directory", "move it away, or set PROVISION_STATE_DIR")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in missing:
        os.chmod(folder, 0o700)
    return path


class StateStore:
    """Loads and saves the state of one environment; `save` is atomic and leaves the file 0600.

    Args:
        env: the environment name (checked by `check_env_name`).
        directory: the state directory; default `state_dir()`.

    Raises:
        BadInput: invalid env name.
    """

    def __init__(self, env: str, directory: Path | None = None) -> None:
        self.env = check_env_name(env)
        self.directory = directory or state_dir()
        self.path = self.directory / f"{env}.json"

    def exists(self) -> bool:
        """True when the environment has a state file."""
        return self.path.exists()

    def load(self) -> State:
        """The stored state, or a fresh empty one when the file does not exist.

        Raises:
            BadInput: the file is not valid JSON or not a state document (names the file).
        """
        if not self.path.exists() and not self.path.is_symlink():
            return State(env=self.env)
        if not self.path.is_file():
            raise BadInput(f"state file {self.path} is not a regular file", "move it away, then re-run")
        try:
            document = json.loads(self.path.read_bytes().decode("utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise BadInput(f"state file {self.path} is corrupt ({first})",
                           "restore it from backup or remove it") from None
        version = document.get("version") if isinstance(document, dict) else None
        if isinstance(version, int) and version > STATE_VERSION:
            raise BadInput(f"state file {self.path} has version {version}, newer than this provision knows "
                           f"({STATE_VERSION})", "upgrade provision")
        try:
            return State.model_validate(document)
        except (ValidationError, BadInput) as exc:
            if isinstance(exc, BadInput):
                raise BadInput(f"state file {self.path} is corrupt ({exc.message})",
                               "restore it from backup or remove it") from None
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "document"
            raise BadInput(f"state file {self.path} is corrupt ({where}: {err['msg']})",
                           "restore it from backup or remove it") from None

    def save(self, state: State) -> None:
        """Write ``state`` atomically with mode 0600 (the directory is created 0700)."""
        private_dir(self.directory)
        state.updated_at = datetime.now(timezone.utc)
        atomic_write(self.path, (state.model_dump_json(indent=2) + "\n").encode())

    def delete(self) -> None:
        """Remove the state file, then every temporary file killed runs left in the state directory (a copy of
        this env's state or another's; `provision.files.remove_orphan_temporaries`). Nothing happens when there is
        none. Raises OSError when the directory cannot be written."""
        self.path.unlink(missing_ok=True)
        remove_orphan_temporaries(self.path, every_name=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on this environment for the duration of a command.

        The lock file ``<env>.json.lock`` holds the holder's pid while the lock is held and is removed on release
        (so a run that changed nothing, a refused one included, leaves no file behind). Removing a lock file is safe
        because a run that locked a file someone removed meanwhile (its inode is no longer the path's) starts over
        on the new file.

        Raises:
            BadInput: another run holds the lock (names its pid).
        """
        private_dir(self.directory)
        lock_path = self.directory / f"{self.env}.json.lock"
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise BadInput(
                    f"environment {self.env!r} is in use by another provision run (pid {holder})",
                    "wait for it to finish, then re-run",
                ) from None
            try:
                current = os.stat(lock_path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the holder before us removed this file on release: lock the new one
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            try:
                os.unlink(lock_path)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
