"""The format machinery every target shares: value quoting for the parser that really reads each file (dotenv,
YAML, JSON), the Jinja environment, the `RenderedFile` decision (create / update / no change) and the
all-or-nothing write of a set of rendered files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.files import Replacement, read_regular, replace_all
from provision.resources import packaged

_ENV_BARE = re.compile(r"^[A-Za-z0-9_./:@+,=%^~-]+$")


def env_value(value: Any) -> str:
    """Quote ``value`` for a ``.env`` so Docker Compose and python-dotenv read back exactly ``value``.

    Rules (Compose's dotenv syntax, https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/#env-file-syntax,
    checked against Compose v2.40): plain characters stay bare; anything else is single-quoted (literal in both
    parsers, ``$`` and ``#`` included); a value holding ``'`` is double-quoted when it has none of ``$ \\ " ` ``
    (which Compose would interpolate or unescape).

    Returns:
        The value as it goes after ``KEY=``.

    Raises:
        BadInput: the value holds a newline or NUL, or both ``'`` and one of ``$ \\ " ` ``.
    """
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if any(c in text for c in "\r\n\0"):
        raise BadInput("a value for .env holds a line break or NUL, which Compose cannot read back",
                       "use a value without line breaks")
    if _ENV_BARE.match(text):
        return text
    if "'" not in text:
        return f"'{text}'"
    if not any(c in text for c in '$\\"`'):
        return f'"{text}"'
    raise BadInput(
        f"a value for .env holds both ' and one of $ \\ \" ` ({len(text)} characters); no quoting makes Docker "
        "Compose and python-dotenv read it the same", "use a value without a single quote")


def line_ending(text: str) -> str:
    """The line ending most lines of ``text`` use (``\\r\\n`` or ``\\n``; ``\\n`` for a text with none)."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def yaml_str(value: Any) -> str:
    """A YAML double-quoted scalar for ``value`` (JSON string syntax, which YAML's double quotes accept)."""
    return json.dumps(str(value), ensure_ascii=False)


def compose_path(value: Any) -> str:
    """Escape ``$`` as ``$$`` so Compose does not interpolate a host path in a compose file
    (https://docs.docker.com/reference/compose-file/interpolation/)."""
    return str(value).replace("$", "$$")


def json_value(value: Any) -> str:
    """``value`` as a JSON literal (strings quoted and escaped, lists as arrays), for JSON templates."""
    return json.dumps(value, ensure_ascii=False)


def environment(**filters: Any) -> Any:
    """The Jinja environment over the packaged ``templates/`` directory: strict undefined, no autoescape, trailing
    newline kept, with the quoting filters (`env_value`, `yaml_str`, `compose_path`, `json_value`) and ``filters``.
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(packaged("templates"))),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(env_value=env_value, yaml_str=yaml_str, compose_path=compose_path, json_value=json_value,
                       **filters)
    return env


@dataclass
class RenderedFile:
    """One output of ``render-env``.

    Attributes:
        path: absolute destination path (a symlink is followed when written).
        content: the complete new content.
        action: ``create`` | ``update`` | ``no change``.
        backup: where the previous content was copied (set by `write` when written over an existing file).
        preview: the part `provision` manages (for display; may hold secrets, mask before printing).
        secret: the content holds a secret of the grant: written no more open than 0600.
        mode: the permission bits `write` gave the file (None until written).
    """

    path: Path
    content: str
    action: str
    backup: Path | None = None
    preview: str = ""
    secret: bool = True
    mode: int | None = None


def read_existing(path: Path) -> bytes | None:
    """The bytes of an existing destination, or None when there is none (`provision.files.read_regular`: at most
    1 MiB, never a FIFO, directory or device).

    Raises:
        BadInput: not a regular file, too large, or unreadable (names it).
    """
    try:
        return read_regular(path)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions") from None


def read_text_exact(path: Path) -> str | None:
    """A file's text with its bytes preserved exactly: no newline translation; bytes that are not UTF-8 kept as
    surrogate escapes (written back unchanged by `write`). None when there is no file. Raises as `read_existing`."""
    data = read_existing(path)
    return None if data is None else data.decode("utf-8", errors="surrogateescape")


def decide(path: Path, content: str, preview: str, old: str | None, secret: bool = True) -> RenderedFile:
    """The `RenderedFile` for ``content`` at ``path`` whose current text is ``old`` (None: no file)."""
    if old is None:
        return RenderedFile(path, content, "create", preview=preview, secret=secret)
    return RenderedFile(path, content, "no change" if old == content else "update", preview=preview, secret=secret)


def write(files: list[RenderedFile]) -> None:
    """Write every changed file of ``files``, all or none (`provision.files.replace_all`): each new content is
    staged next to its destination, each existing file is copied to a unique
    ``<name>.provision-backup-<UTC time, microseconds>[-N]`` (0600), then all are renamed into place. New files are
    0600; an existing file keeps its owner, group and mode (no looser than 0600 when it holds a secret); a symlink
    stays and its target is replaced. Unchanged files are not touched. Sets ``backup`` and ``mode`` of each file
    written.

    Raises:
        BadInput: a destination is not a regular file or not writable: nothing was written.
        PartialFailure: a rename failed after another file was written; those were restored from their backups.
    """
    changed = [f for f in files if f.action != "no change"]
    items = [Replacement(f.path, f.content.encode("utf-8", errors="surrogateescape"), f.secret) for f in changed]
    replace_all(items)
    for f, item in zip(changed, items, strict=True):
        f.backup, f.mode = item.backup, item.mode
