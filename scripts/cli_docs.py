"""Generate docs/cli.md, the command reference, from the Typer app: every command's ``--help`` (its text, options,
examples), the root's included, at a fixed width so the file is the same on every machine.

Usage: ``python scripts/cli_docs.py`` (writes docs/cli.md) or ``python scripts/cli_docs.py --check`` (exit 1 when
docs/cli.md differs from what the code generates; tests/test_cli_conventions.py runs the same comparison).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "cli.md"
WIDTH = 100
"""Columns the help text is wrapped at in the reference."""

HEADER = """# Command reference

Generated from the code by `python scripts/cli_docs.py`; do not edit by hand (a test fails when this file differs
from what the code generates). The same text is printed by `provision COMMAND --help` (or `-h`).
"""


def commands(chain: tuple[tuple[str, Any], ...]) -> Iterator[tuple[tuple[str, Any], ...]]:
    """Every command of the click tree under the last of ``chain`` (itself first), depth first in listing order,
    each as its chain of ``(name, command)`` from the root."""
    yield chain
    command = chain[-1][1]
    for name in getattr(command, "list_commands", lambda ctx: [])(None):
        yield from commands((*chain, (name, command.commands[name])))


def help_text(chain: tuple[tuple[str, Any], ...]) -> str:
    """The last command of ``chain``'s ``--help`` as printed under ``provision``, wrapped at `WIDTH` columns."""
    from typer import _click as click

    ctx = None
    for name, command in chain:
        settings = dict(command.context_settings, terminal_width=WIDTH, max_content_width=WIDTH)
        settings.pop("default_map", None)
        ctx = click.Context(command, info_name=name, parent=ctx, **settings)
    return chain[-1][1].get_help(ctx).rstrip()


def render() -> str:
    """The whole of docs/cli.md, generated from `provision.cli.app`."""
    sys.path.insert(0, str(REPO))
    import typer.main

    from provision.cli import app

    root = typer.main.get_command(app)
    parts = [HEADER]
    for chain in commands((("provision", root),)):
        title = " ".join(name for name, _ in chain)
        parts.append(f"## {title}\n\n```text\n{help_text(chain)}\n```\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Write docs/cli.md, or with ``--check`` compare it; returns the exit code."""
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.relative_to(REPO)} is out of date: run python scripts/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
