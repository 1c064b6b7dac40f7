"""Bounded YAML loading for files a person writes (profiles, Compose overrides, ``remote_links.yml``): UTF-8 only,
no duplicate key, no alias bomb, a mapping at the top, and every problem one line that names the file and the line
but never echoes the file's content (a profile may hold a connection string with its account key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provision.errors import BadInput

MAX_NODES = 100_000
"""The most YAML nodes a file may expand to through its aliases (each alias counted with the size of what it
refers to); a legitimate Compose file has a few thousand. Above it the file is refused as an alias bomb."""


def _children(node: Any) -> list[Any]:
    """The child nodes of a composed YAML node (ruamel ``MappingNode`` values are (key, value) pairs)."""
    value = getattr(node, "value", None)
    if not isinstance(value, list):
        return []
    return [x for item in value for x in (item if isinstance(item, tuple) else (item,))]


def expanded_size(data: Any, limit: int = MAX_NODES) -> int:
    """How many nodes the composed YAML node graph ``data`` (``YAML.compose``) holds with every alias expanded,
    counted without expanding (each shared node's size is computed once); stops counting above ``limit``.

    Raises:
        ValueError: a node contains itself (a recursive alias).
    """
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise ValueError("recursive alias")
        busy.add(key)
        total = 1
        for child in _children(node):
            total += size(child)
            if total > limit:
                break
        busy.discard(key)
        sizes[key] = total
        return total

    return size(data)


def decode(path: Path, data: bytes, fix: str) -> str:
    """``data`` (the bytes of ``path``) as UTF-8 text.

    Raises:
        BadInput: not UTF-8 (names the byte offset, not the bytes); the hint is ``fix``.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} is not UTF-8 text (byte {exc.start})", fix) from None


def load_mapping(path: Path, text: str, yaml: Any, fix: str) -> Any:
    """Load ``text`` (the content of ``path``) with the ruamel ``yaml`` instance given (round-trip for files that
    are edited, safe for files only read), after checking its expanded size.

    Returns:
        The top-level mapping (a dict, or ruamel's ``CommentedMap``), or None for an empty document.

    Raises:
        BadInput: invalid YAML, a duplicate key, nesting too deep, an alias bomb (more than `MAX_NODES` nodes once
            expanded) or a recursive alias, or a top level that is not a mapping; one line naming the file (and the
            line), never its content; the hint is ``fix``.
    """
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml.allow_duplicate_keys = False
    try:
        size = expanded_size(yaml.compose(text))
    except (ValueError, RecursionError):
        raise BadInput(f"{path} holds a recursive alias (a node that contains itself) or is nested too deeply",
                       fix) from None
    except YAMLError:
        size = 0  # reported below, with the loader's message
    if size > MAX_NODES:
        raise BadInput(f"{path} expands to more than {MAX_NODES} YAML nodes through its aliases (an alias bomb)", fix)
    try:
        data = yaml.load(text)
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise BadInput(f"{path} has a duplicate key (line {line}), which YAML forbids", fix) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"{path} is not valid YAML ({exc.problem or exc.context}{where})", fix) from None
    except YAMLError as exc:
        raise BadInput(f"{path} is not valid YAML ({type(exc).__name__})", fix) from None
    except RecursionError:
        raise BadInput(f"{path} is nested too deeply to be a configuration file", fix) from None
    if data is not None and not isinstance(data, dict):
        raise BadInput(f"{path} is not a YAML mapping", fix)
    return data
