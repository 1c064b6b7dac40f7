"""One exception family; the CLI catches it once and turns it into a one-line message and an exit code.

Exit codes (shared/DESIGN.md "CLI contract"): 0 ok, 2 bad input (nothing changed), 3 the cloud refused
(auth, quota, name taken), 4 partial failure (state records what exists), 5 verify found a credential that
does more or less than it should.
"""

from __future__ import annotations


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
