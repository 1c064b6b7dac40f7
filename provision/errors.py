"""One exception family; the CLI catches it once and turns it into a one-line message and an exit code.

Exit codes (`EXIT_CODES`, printed in ``provision --help``): 0 ok, 1 aborted at a prompt, 2 bad input (nothing
changed), 3 the cloud refused or could not be reached (auth, quota, name taken, no answer), 4 partial failure (state
records what exists), 5 verify found a credential that does more or less than it should, 6 status found drift.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DISTRIBUTION = "provision-cv"
"""The name `provision` is published under on PyPI (``pipx install 'provision-cv[all]'``); the console script and
the import package are both ``provision``."""

EXIT_CODES = {
    0: "ok",
    1: "aborted at destroy's prompt (nothing deleted); `sandbox status`: not running",
    2: "bad input: nothing was changed",
    3: "the cloud refused or could not be reached (auth, quota, name taken, no answer)",
    4: "partial failure: the state file records what exists; re-run or destroy",
    5: "verify mismatch: a credential does more or less than its grant",
    6: "status found drift between the cloud and the state file",
}
"""Every exit code of the CLI and what it means (the root ``--help`` epilog and docs/cli.md print this table)."""


class ProvisionError(Exception):
    """Base of every error `provision` reports to the user.

    Args:
        message: what went wrong, one line, naming the offending value.
        hint: what to do next (a flag to add, a command to run); appended after " — ".

    Attributes:
        exit_code: the process exit code the CLI uses for this error.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class BadInput(ProvisionError):
    """The user's input is wrong; raised before any cloud call, so nothing was created or changed (exit 2)."""

    exit_code = 2


class CloudRefused(ProvisionError):
    """The cloud refused a request: authentication, permission, quota, a name taken by someone else (exit 3)."""

    exit_code = 3


class PartialFailure(ProvisionError):
    """Some steps succeeded before a failure; the state file records what exists, so a re-run or
    `provision destroy` finishes the job (exit 4)."""

    exit_code = 4


class VerifyFailed(ProvisionError):
    """An issued credential can do more, or less, than its grant says (exit 5)."""

    exit_code = 5


class DriftFound(ProvisionError):
    """``provision status`` found live resources that differ from the state file (exit 6)."""

    exit_code = 6


class Aborted(ProvisionError):
    """The user answered no at a confirmation prompt; nothing was changed (exit 1)."""

    exit_code = 1


class MissingExtra(BadInput):
    """A cloud SDK needed by the command is not installed.

    Args:
        package: the import that failed (e.g. ``azure.storage.blob``).
        extra: the extra of `DISTRIBUTION` that installs it (e.g. ``azure``); its hint is `install_command`.
    """

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"the Python package {package!r} is not installed (the {extra!r} extra)",
                         f"install it with: {install_command(extra)}")


EXTRA_OF_MODULE = {"azure": "azure", "google": "gcs", "cvat_sdk": "cvat", "moto": "sandbox",
                   "gcp_storage_emulator": "sandbox"}
"""Top-level import name of an optional SDK -> the extra of `DISTRIBUTION` that installs it."""


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """The `MissingExtra` for an import of an optional SDK that failed wherever it happened (the providers import
    their SDK lazily, on first use), or None when ``exc`` is about any other module."""
    name = exc.name or ""
    extra = EXTRA_OF_MODULE.get(name.split(".")[0])
    return MissingExtra(name, extra) if extra and isinstance(exc, ModuleNotFoundError) else None


def pipx_home() -> Path:
    """pipx's home: ``$PIPX_HOME``, else ``~/.local/share/pipx`` (pipx's default on Linux and macOS; its venvs live
    in ``<home>/venvs/<package>``, https://pipx.pypa.io/stable/installation/)."""
    return Path(os.environ.get("PIPX_HOME") or Path.home() / ".local" / "share" / "pipx")


def installed_by_pipx(prefix: str | None = None) -> bool:
    """True when the running interpreter's environment (``prefix``, default ``sys.prefix``) is a pipx venv: it
    lies under ``<pipx home>/venvs/`` or any ``.../pipx/venvs/`` directory."""
    where = Path(prefix or sys.prefix).resolve()
    venvs = (pipx_home() / "venvs").resolve()
    return venvs in where.parents or any(p.name == "venvs" and p.parent.name == "pipx" for p in where.parents)


def install_command(extra: str, prefix: str | None = None) -> str:
    """The command that installs ``extra`` of `DISTRIBUTION` into the environment `provision` runs from:
    ``pipx inject`` under pipx (the extra's packages are injected into provision's venv), else that environment's
    own pip (``<prefix>/bin/python -m pip install 'provision-cv[extra]'``).

    Args:
        extra: an extra of `DISTRIBUTION` (``azure``, ``gcs``, ``sandbox``, ``cvat``, ``all``).
        prefix: the environment (default ``sys.prefix``).
    """
    if installed_by_pipx(prefix):
        packages = " ".join(f"'{p}'" for p in extra_requirements(extra)) or f"'{DISTRIBUTION}[{extra}]'"
        return f"pipx inject {DISTRIBUTION} {packages}"
    python = Path(prefix or sys.prefix) / "bin" / "python"
    return f"{python} -m pip install '{DISTRIBUTION}[{extra}]'"


def extra_requirements(extra: str) -> list[str]:
    """The requirements of ``extra`` as the installed metadata of `DISTRIBUTION` lists them (an extra naming other
    extras of the distribution is expanded); empty when the metadata is not there (a bare checkout)."""
    from importlib import metadata

    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    found: list[str] = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        if f'extra == "{extra}"' not in marker.replace("'", '"'):
            continue
        requirement = requirement.strip()
        if requirement.startswith(f"{DISTRIBUTION}["):
            for inner in requirement[len(DISTRIBUTION) + 1:].rstrip("]").split(","):
                found += [r for r in extra_requirements(inner.strip()) if r not in found]
        elif requirement not in found:
            found.append(requirement)
    return found


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` in agreement: ``1 object version``, ``2 object versions`` (``plural`` for an irregular
    plural; default ``noun + "s"``)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


INITIALISMS_SAID_WITH_A_VOWEL = ("s3", "hmac", "iam", "rbac", "sdk", "mfa")
"""Words spelled out letter by letter whose first letter is said with a vowel ("ess", "aitch", "eye")."""


def a_or_an(word: str) -> str:
    """``word`` with its indefinite article as the word is said: ``an azure``, ``an s3``, ``a gcs``."""
    said_vowel = word[:1].lower() in "aeio" or word.lower() in INITIALISMS_SAID_WITH_A_VOWEL
    return f"{'an' if said_vowel else 'a'} {word}"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its class name when empty), at most ``limit`` characters."""
    lines = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


def refusing(service: str, operation: str, errors: Callable[[], tuple[type[BaseException], ...]]) -> Callable[[F], F]:
    """Decorate an `provision.objects.ObjectStore` method so that the cloud SDK's errors leave it as a one-line
    `CloudRefused` naming the service, the operation, the bucket (``self.bucket``) and the key (the first
    argument, when it is one), instead of a traceback. Generator methods (listings) are guarded while iterated.

    Args:
        service: e.g. ``Azure Blob``, ``Cloud Storage``.
        operation: the API operation, e.g. ``ListBlobs``.
        errors: returns the SDK's exception types (a function, so the SDK is imported only when needed).

    Returns:
        The decorator.
    """
    import functools
    import inspect

    def decorate(method: F) -> F:
        def refused(self: Any, args: tuple[Any, ...], exc: BaseException) -> CloudRefused:
            key = args[0] if args and isinstance(args[0], str) and not operation.startswith("List") else None
            where = f"bucket {self.bucket!r}" + (f", key {key!r}" if key else "")
            return CloudRefused(f"{service} {operation} on {where} failed: {one_line(exc)}",
                                "check that the bucket exists, that the credential may do this (`provision "
                                "verify`), and that the endpoint is reachable")

        if inspect.isgeneratorfunction(method):
            @functools.wraps(method)
            def listing(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    yield from method(self, *args, **kwargs)
                except errors() as exc:
                    raise refused(self, args, exc) from None

            return listing  # type: ignore[return-value]

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except errors() as exc:
                raise refused(self, args, exc) from None

        return call  # type: ignore[return-value]

    return decorate
