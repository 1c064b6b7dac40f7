"""Per-environment state: ``.provision/<env>.json`` (mode 0600) holds the Grant and every resource created or
adopted, written as soon as each resource exists, so a re-run or ``destroy`` can always finish the job."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provision.errors import BadInput
from provision.files import atomic_write
from provision.models import Grant, Resource
from provision.names import check_env_name

STATE_VERSION = 1


def state_dir() -> Path:
    """The state directory: ``$PROVISION_STATE_DIR`` or ``./.provision`` (relative to the working directory)."""
    return Path(os.environ.get("PROVISION_STATE_DIR") or ".provision").absolute()


class RenderRecord(BaseModel):
    """One ``render-env`` run to repeat when the secret changes (``--rotate``).

    Attributes:
        target: ``supervisely`` | ``cvat`` | ``onepanel``.
        out: absolute output directory.
        options: the render options given (connection name, ...), as strings.
    """

    model_config = ConfigDict(extra="forbid")

    target: str
    out: str
    options: dict[str, Any] = Field(default_factory=dict)


class State(BaseModel):
    """What `provision` knows about one environment.

    Attributes:
        env: the environment name.
        provider: ``s3`` | ``azure`` | ``gcs``, or None before the first apply.
        inputs: the validated profile of the last apply (no secrets), used to spot a changed re-run.
        grant: the Grant, or None until a credential exists.
        resources: every resource created or adopted, in creation order.
        renders: the ``render-env`` runs made from this grant (repeated after a rotation).
        updated_at: UTC time of the last save.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = STATE_VERSION
    env: str
    provider: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    grant: Grant | None = None
    resources: list[Resource] = Field(default_factory=list)
    renders: list[RenderRecord] = Field(default_factory=list)
    updated_at: datetime | None = None

    def remember_render(self, record: RenderRecord) -> bool:
        """Record a render-env run (one per target and directory). Returns True when the record is new or changed."""
        old = next((r for r in self.renders if r.target == record.target and r.out == record.out), None)
        if old == record:
            return False
        if old is not None:
            self.renders.remove(old)
        self.renders.append(record)
        return True

    def find(self, kind: str, name: str) -> Resource | None:
        """The recorded resource of ``kind`` named ``name``, or None."""
        return next((r for r in self.resources if r.kind == kind and r.name == name), None)

    def record(self, resource: Resource) -> None:
        """Add ``resource``, or replace the record of the same kind and name (keeping ``created`` if it was True)."""
        old = self.find(resource.kind, resource.name)
        if old is None:
            self.resources.append(resource)
        else:
            old.created = old.created or resource.created
            old.parent = resource.parent or old.parent

    def forget(self, kind: str, name: str) -> None:
        """Drop the record of a resource that no longer exists."""
        self.resources = [r for r in self.resources if not (r.kind == kind and r.name == name)]


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
        if not self.path.exists():
            return State(env=self.env)
        try:
            return State.model_validate(json.loads(self.path.read_text()))
        except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0]
            raise BadInput(f"state file {self.path} is corrupt ({first})",
                           "restore it from backup or remove it") from None

    def save(self, state: State) -> None:
        """Write ``state`` atomically with mode 0600 (the directory is created 0700)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        state.updated_at = datetime.now(timezone.utc)
        atomic_write(self.path, (state.model_dump_json(indent=2) + "\n").encode())

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on this environment for the duration of a command.

        The lock file ``<env>.json.lock`` holds the holder's pid.

        Raises:
            BadInput: another run holds the lock (names its pid).
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self.directory / f"{self.env}.json.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise BadInput(
                    f"environment {self.env!r} is in use by another provision run (pid {holder})",
                    "wait for it to finish, then re-run",
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)
