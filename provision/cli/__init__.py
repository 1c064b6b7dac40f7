"""The command line: each command turns its flags into one call of `provision.actions` (or of the data module
that does the job) and prints the result through `provision.output`.

Nothing heavy is imported here or by the command modules at import time (no cloud SDK, rich, jinja2 or pydantic:
each command imports what it needs when it runs), so ``provision --help`` stays fast. Every `ProvisionError` is
turned into a one-line message and its exit code in one place, `errors`.

Modules: `provision.cli.provision` (s3, azure, gcs), `provision.cli.env` (render-env, verify, status, destroy),
`provision.cli.data` (migrate, links, manifest, cvat attach), `provision.cli.sandbox` (sandbox up/down/status).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer

GROUP_SETTINGS: dict[str, Any] = {"default_map": {"help": False}}
"""Context settings of every command group. Typer (0.26+) coerces each parameter's value through a pydantic
TypeAdapter unless it already is a bool; a group's own ``--help`` is None when only a subcommand's is given, so
``provision s3 --help`` would import pydantic just to read the group's unset flag. A default of False (click's
``default_map``) is a bool, skipped, and keeps every ``--help`` free of pydantic (tests/test_startup.py)."""

app = typer.Typer(
    help="Provision cloud object storage for self-hosted Supervisely, CVAT and Onepanel, least-privilege, in one "
    "command. Start with `provision sandbox up` and `--env sandbox` to try it with no cloud account.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=GROUP_SETTINGS,
)

ENV = typer.Option("default", "--env", help="Environment (one platform install): state in <state dir>/<env>.json "
                   "(PROVISION_STATE_DIR, else the nearest .provision/ up from here, else the per-user state "
                   "directory), defaults in envs/<env>.yaml.")
GRANT = typer.Option(None, "--grant", metavar="NAME", help="Only this grant of the environment.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan; make no change at all.")
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout (human text goes to stderr).")
SHOW = typer.Option(False, "--show-secrets", help="Print secrets instead of masking them.")
ROTATE = typer.Option(False, "--rotate", help="Issue a new secret, verify it, re-render, then revoke the old one.")
NO_VERIFY = typer.Option(False, "--no-verify", help="Skip probing a new or changed credential.")


def sub_app(help_text: str) -> typer.Typer:
    """A command group (``provision sandbox ...``) with the same plain (no rich) help as `app`."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, context_settings=GROUP_SETTINGS)


def errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn `ProvisionError` into a one-line red message and its exit code, and Ctrl-C into exit 130; no
    traceback, no locals."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from provision.errors import ProvisionError

        try:
            return func(*args, **kwargs)
        except ProvisionError as exc:
            from provision.output import error

            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def main() -> None:
    """Console-script entry point (``provision = "provision.cli:main"``)."""
    app()
    sys.exit(0)


# The command modules register their commands on `app` when imported; ``provision --help`` lists the commands in
# this order, then the groups (sandbox, cvat) in theirs.
# isort: off
from provision.cli import provision as provision_commands  # noqa: E402
from provision.cli import env as env_commands  # noqa: E402
from provision.cli import sandbox as sandbox_commands  # noqa: E402
from provision.cli import data as data_commands  # noqa: E402
# isort: on

__all__ = ["app", "main", "errors", "sub_app", "provision_commands", "env_commands", "sandbox_commands",
           "data_commands"]
