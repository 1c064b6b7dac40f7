"""The command line: each command turns its flags into one call of `provision.actions` (or of the data module
that does the job) and prints the result through `provision.output`.

Nothing heavy is imported here or by the command modules at import time (no cloud SDK, rich, jinja2 or pydantic:
each command imports what it needs when it runs), so ``provision --help`` stays fast. Every `ProvisionError` is
turned into a one-line message and its exit code in one place, `errors`.

Modules: `provision.cli.provision` (s3, azure, gcs), `provision.cli.env` (render-env, verify, status, destroy),
`provision.cli.data` (migrate, links, manifest, cvat attach), `provision.cli.sandbox` (sandbox up/down/status).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from typer import _click as click  # Typer's own copy of click (typer.Exit, typer.Abort are its classes)
from typer.core import TyperArgument, TyperGroup


class Group(TyperGroup):
    """A command group whose commands' arguments show their metavar in ``--help`` (``BUCKET``), not Typer's type
    label beside it (``BUCKET <list[str]>``); options with a ``metavar`` already show only it.

    Click's own usage errors (an unknown flag or command, a missing or out-of-range value) leave it as
    `OneLineUsageError`: one line ``error: <problem> — <fix>`` like every other bad input, not click's usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, TyperArgument) and param.metavar:
                    param.display_type = lambda ctx: ""  # type: ignore[method-assign]

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


class OneLineUsageError(click.exceptions.UsageError):
    """A click usage error (or a `provision.errors.BadInput` raised while parsing a value) shown as one line on
    stderr, ``error: <problem> — <fix>``; exit 2. ``format_message`` is the problem alone (``--json`` puts it in
    its document)."""

    def __init__(self, problem: str, hint: str, ctx: Any = None) -> None:
        super().__init__(problem, ctx)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()} — {self.hint}", file=file or sys.stderr)


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    """Turn click's usage errors (not the help shown for a bare group) and a `BadInput` raised by a value parser
    into `OneLineUsageError`."""
    from provision.errors import BadInput

    try:
        yield
    except (OneLineUsageError, click.exceptions.NoArgsIsHelpError):
        raise
    except click.exceptions.UsageError as exc:
        message = exc.format_message()
        problem = message[:1].lower() + message[1:] if message[1:2].islower() else message
        raise OneLineUsageError(" ".join(problem.rstrip(".").split()), f"see `{_help_command(exc.ctx)}`",
                                exc.ctx) from None
    except BadInput as exc:
        raise OneLineUsageError(exc.message, exc.hint or "see `provision --help`") from None


def _help_command(ctx: Any) -> str:
    """``provision <command path> --help`` for the context a usage error happened in (the program name as the user
    typed it is not used: under a test runner it is not ``provision``)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    return " ".join(["provision", *names, "--help"])


GROUP_SETTINGS: dict[str, Any] = {"default_map": {"help": False}, "help_option_names": ["-h", "--help"]}
"""Context settings of every command group: ``-h`` is ``--help`` (click passes ``help_option_names`` down to every
subcommand's context). Typer (0.26+) coerces each parameter's value through a pydantic TypeAdapter unless it already
is a bool; a group's own ``--help`` is None when only a subcommand's is given, so ``provision s3 --help`` would import
pydantic just to read the group's unset flag. A default of False (click's ``default_map``) is a bool, skipped, and
keeps every ``--help`` free of pydantic (tests/test_startup.py)."""

ROOT_SETTINGS: dict[str, Any] = dict(GROUP_SETTINGS, default_map={"help": False, "install_completion": False,
                                                                  "show_completion": False})
"""`GROUP_SETTINGS` of the root, whose completion flags (Typer's ``add_completion``) are unset bools the same way."""


def examples(*lines: str) -> str:
    """A command's help epilog: an "Examples" section with one command line per argument, kept as written (click's
    ``\\b`` marker stops it from re-wrapping the block)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _exit_codes() -> str:
    from provision.errors import EXIT_CODES

    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


ROOT_EPILOG = (examples("provision sandbox up", "provision s3 --env sandbox --prefix demo --full",
                        "provision render-env --env sandbox --out ./supervisely", "provision verify --env sandbox",
                        "provision status --env sandbox --json")
               + "\n\n" + _exit_codes()
               + "\n\nWith --json every command prints one JSON document on stdout, errors included: "
               "{\"error\": ..., \"hint\": ..., \"exit_code\": ...}. Human text goes to stderr.")
"""The root ``--help`` epilog: examples, every exit code, the ``--json`` contract."""

app = typer.Typer(
    cls=Group,
    help="Provision cloud object storage for self-hosted Supervisely, CVAT and Onepanel, least-privilege, in one "
    "command. Start with `provision sandbox up` and `--env sandbox` to try it with no cloud account.",
    epilog=ROOT_EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=ROOT_SETTINGS,
)


def version() -> str:
    """The installed version: the package metadata of `provision.errors.DISTRIBUTION`, else
    ``provision.__version__`` (a checkout run with ``PYTHONPATH``)."""
    from importlib import metadata

    from provision.errors import DISTRIBUTION

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from provision import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"provision {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                           help="Print the version and exit.")) -> None:
    pass


ENV = typer.Option("default", "--env", metavar="ENV", help="Environment (one platform install): state in <state "
                   "dir>/<env>.json (PROVISION_STATE_DIR, else the nearest .provision/ up from here, else the "
                   "per-user state directory), defaults in envs/<env>.yaml.")
GRANT = typer.Option(None, "--grant", metavar="NAME", help="Only this grant of the environment.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan; make no change at all.")
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout (human text goes to stderr).")
SHOW = typer.Option(False, "--show-secrets", help="Print secrets instead of masking them.")
ROTATE = typer.Option(False, "--rotate", help="Issue a new secret, verify it, re-render, then revoke the old one.")
NO_VERIFY = typer.Option(False, "--no-verify", help="Skip probing a new or changed credential.")


def sub_app(help_text: str, epilog: str | None = None) -> typer.Typer:
    """A command group (``provision sandbox ...``) with the same plain (no rich) help as `app` and ``epilog`` (its
    `examples`)."""
    return typer.Typer(cls=Group, help=help_text, epilog=epilog, no_args_is_help=True, rich_markup_mode=None,
                       context_settings=GROUP_SETTINGS)


def errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn `ProvisionError` into a one-line red message on stderr and its exit code, a missing optional SDK into
    `provision.errors.MissingExtra` (exit 2, with the install command), and Ctrl-C into exit 130; no traceback, no
    locals. Under ``--json`` (the command's ``json_out`` argument) stdout holds exactly one JSON
    document: the command's, or on an error ``{"error", "hint", "exit_code"}`` (merged into the command's document
    when it printed one before failing, e.g. verify's probes or status's drift)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from provision import output
        from provision.errors import ProvisionError, missing_extra

        json_out = bool(kwargs.get("json_out"))
        with output.one_json_document(json_out) as document:
            try:
                try:
                    _warn_secret_arguments()
                    _refuse_empty(kwargs)
                    return func(*args, **kwargs)
                except ImportError as exc:  # an optional SDK, imported on first use: one line, exit 2
                    raise (missing_extra(exc) or exc) from None
            except ProvisionError as exc:
                output.error(str(exc))
                document.fail(exc.message, exc.hint, exc.exit_code)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                document.fail("interrupted", None, 130)
                raise typer.Exit(130) from None

    return wrapper


def _refuse_empty(values: dict[str, Any]) -> None:
    """Refuse an empty or blank string given for any option or argument of the running command (``--user ''``,
    ``--region ''``, an empty BUCKET): an empty value is never meant, and silently treating it as "not given" would
    do something else than asked. Options whose default is ``""`` (``--prefix`` of ``links``: every key) are not
    checked.

    Raises:
        BadInput: names the option (or the argument's metavar).
    """
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    from provision.errors import BadInput

    ctx = get_current_context(silent=True)
    if ctx is None:
        return
    for param in ctx.command.params:
        value = values.get(param.name or "")
        if param.default == "" or ctx.get_parameter_source(param.name or "") not in (
                ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue  # an empty default means "all" (links --prefix): saying so explicitly is not a mistake
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(item, str) and not item.strip() for item in items):
            raise BadInput(f"{_param_label(param)} is empty", "give it a value, or leave it out")


SECRET_ARGUMENTS = {"--token": "CVAT_ACCESS_TOKEN", "--password": "CVAT_PASSWORD",
                    "--connection-string": "AZURE_STORAGE_CONNECTION_STRING"}
"""Options that carry a secret, and the environment variable each also reads (the first two through Typer's
``envvar``, the connection string through the Azure provider). Given on the command line, a secret lands in the
shell's history and in the process list (``ps``, ``/proc/<pid>/cmdline``) for every user of the machine."""


def _warn_secret_arguments() -> None:
    """Print one warning line on stderr for each `SECRET_ARGUMENTS` option given on the command line (not from its
    environment variable), naming the variable to use instead; the value itself is never printed. Scripts are
    warned too: ``--token "$TOKEN"`` still puts the value in the process list."""
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return
    for param in ctx.command.params:
        flag = _param_label(param)
        if flag in SECRET_ARGUMENTS and ctx.params.get(param.name or "") \
                and ctx.get_parameter_source(param.name or "") == ParameterSource.COMMANDLINE:
            typer.echo(f"warning: {flag} puts a secret in your shell history and the process list — set "
                       f"{SECRET_ARGUMENTS[flag]} instead", err=True)


def _param_label(param: Any) -> str:
    """An option's long flag (``--user``), or an argument's metavar (``BUCKET``)."""
    flags = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if isinstance(param, TyperArgument) or not flags:
        return str(param.metavar or param.name).upper()
    return flags[0]


def path_of(flag: str) -> Callable[[Any], Path]:
    """A Typer ``parser`` for the path option ``flag``: the value as a Path, refusing an empty one (``Path("")``
    would silently be the current directory).

    Returns:
        The parser; it raises `provision.errors.BadInput` (shown as one line, exit 2) for an empty or blank value.
    """
    def parse(text: Any) -> Path:
        if isinstance(text, str) and not text.strip():
            from provision.errors import BadInput

            raise BadInput(f"{flag} is empty", "give it a path, or leave the option out")
        return Path(text)

    return parse


def main() -> None:
    """Console-script entry point (``provision = "provision.cli:main"``). Click's own usage errors (an unknown
    flag, a missing value: exit 2) are printed as usual, or under ``--json`` as the one JSON document on stdout."""
    try:
        code = app(standalone_mode=False)
    except click.exceptions.ClickException as exc:
        if "--json" in sys.argv[1:]:
            import json

            hint = getattr(exc, "hint", None) or "see `provision COMMAND --help`"
            sys.stdout.write(json.dumps({"error": exc.format_message(), "hint": hint,
                                         "exit_code": exc.exit_code}, indent=2) + "\n")
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


# The command modules register their commands on `app` when imported; ``provision --help`` lists the commands in
# this order, then the groups (sandbox, cvat) in theirs.
# isort: off
from provision.cli import provision as provision_commands  # noqa: E402
from provision.cli import env as env_commands  # noqa: E402
from provision.cli import sandbox as sandbox_commands  # noqa: E402
from provision.cli import data as data_commands  # noqa: E402
# isort: on

__all__ = ["app", "main", "errors", "sub_app", "examples", "version", "provision_commands", "env_commands",
           "sandbox_commands", "data_commands"]
