"""One exception family; the CLI catches it once and turns it into a one-line message and an exit code.

Exit codes (shared/DESIGN.md "CLI contract"): 0 ok, 2 bad input (nothing changed), 3 the cloud refused
(auth, quota, name taken), 4 partial failure (state records what exists), 5 verify found a credential that
does more or less than it should.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


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


class MissingExtra(BadInput):
    """A cloud SDK needed by the command is not installed.

    Args:
        package: the import that failed (e.g. ``boto3``).
        extra: the pip extra that installs it (e.g. ``aws``).
    """

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"the Python package {package!r} is not installed",
            f"install it with: pip install 'provision[{extra}]'",
        )


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
