"""Editing existing YAML files (Compose overrides, ``remote_links.yml``) without losing what is not ours.

A file is loaded with ruamel.yaml's round-trip mode (comments, anchors/aliases, key order, quoting, tags such as
Compose's ``!reset`` / ``!override`` kept), bounded (size, UTF-8, duplicate keys, alias expansion), edited in place,
and dumped. The result is then spliced into the original text: only the lines the edit changes are replaced, so
whatever ruamel would reformat elsewhere (indentation, spacing, comments it drops) stays byte for byte. The spliced
text is parsed back and compared with the intended data; if the splice cannot be made, ruamel's own dump is used.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from provision.errors import BadInput
from provision.yamlsafe import load_mapping

_BLOCK_KEY = re.compile(r"^( *)(?:[^\s#'\"-][^#]*|'[^']*'|\"[^\"]*\"):[ \t]*(?:#.*)?$")
_ITEM = re.compile(r"^( *)- ")
_CONTENT = re.compile(r"^( *)[^\s#]")


def guess_indent(text: str | None) -> tuple[int, int, int]:
    """The ``(mapping, sequence, offset)`` indentation ``text`` uses (ruamel's ``YAML.indent`` arguments): the
    step from the first block key to its nested key, and where the dash of the first block sequence sits under its
    key. Defaults ``(2, 2, 0)`` (PyYAML's style, used for new files)."""
    mapping, offset = None, None
    lines = [line.rstrip("\r\n") for line in (text or "").splitlines()]
    for i, line in enumerate(lines):
        key = _BLOCK_KEY.match(line)
        if not key:
            continue
        following = next((n for n in lines[i + 1:] if _CONTENT.match(n) or _ITEM.match(n)), None)
        if following is None:
            break
        item = _ITEM.match(following)
        depth = len((item or _CONTENT.match(following)).group(1))  # type: ignore[union-attr]
        if item and offset is None and depth >= len(key.group(1)):
            offset = depth - len(key.group(1))
        elif not item and mapping is None and depth > len(key.group(1)):
            mapping = depth - len(key.group(1))
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    offset = 0 if offset is None else offset
    return mapping, max(mapping, offset + 2), offset


def _yaml(indent: tuple[int, int, int]) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = False
    yaml.width = 4096  # never fold a long value (a path, a key) over lines
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def load(path: Path, text: str) -> Any:
    """Load ``text`` (the content of ``path``) in round-trip mode, bounded (`provision.yamlsafe.load_mapping`).

    Returns:
        A ruamel ``CommentedMap`` (or None for an empty document).

    Raises:
        BadInput: invalid YAML, a duplicate key, nesting too deep, an alias bomb (more than
            `provision.yamlsafe.MAX_NODES` nodes once expanded) or a recursive alias, or a top level that is not a
            mapping; one line naming the file.
    """
    return load_mapping(path, text, _yaml(guess_indent(text)), "fix or move the file")


def plain(node: Any) -> Any:
    """``node`` as plain data for comparison: mappings (merge keys applied) and sequences as dicts and lists, a
    tagged node as ``(tag, value)``. Expands aliases: call only on data `load` accepted."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, dict):
        value: Any = {plain(k) if not isinstance(k, (dict, list)) else repr(plain(k)): plain(v)
                      for k, v in node.items()}
    elif isinstance(node, list):
        value = [plain(v) for v in node]
    elif hasattr(node, "value") and tag:  # TaggedScalar
        value = node.value
    else:
        value = node
    return (tag, value) if tag else value


def dump(yaml: Any, data: Any) -> str:
    """``data`` dumped by ruamel ``yaml`` (empty for None)."""
    if data is None:
        return ""
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def splice(original: str, before: str, after: str, newline: str) -> str | None:
    """Apply to ``original`` the line changes that turn ``before`` (ruamel's dump of ``original`` as loaded) into
    ``after`` (its dump once edited), keeping every other line of ``original`` byte for byte.

    Lines are matched without their line endings; inserted lines get ``newline``. Returns None when a changed line
    of ``before`` has no identical line in ``original`` (ruamel reformatted that very region).
    """
    olines = original.splitlines(keepends=True)
    okeys = [line.rstrip("\r\n") for line in olines]
    akeys = before.splitlines()
    bkeys = after.splitlines()
    mapped: dict[int, int] = {}
    for tag, i1, i2, j1, _ in SequenceMatcher(None, akeys, okeys, autojunk=False).get_opcodes():
        if tag == "equal":
            mapped.update({i1 + k: j1 + k for k in range(i2 - i1)})
    patches: list[tuple[int, int, list[str]]] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, akeys, bkeys, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:
            span = [mapped.get(i) for i in range(i1, i2)]
            if None in span or span != list(range(span[0], span[0] + len(span))):  # type: ignore[arg-type, operator]
                return None
            start, end = span[0], span[-1] + 1  # type: ignore[operator]
        elif i1 == 0:
            start = end = 0 if not akeys or 0 not in mapped else mapped[0]
        elif i1 - 1 in mapped:
            start = end = mapped[i1 - 1] + 1
        else:
            return None
        lines = [line + newline for line in bkeys[j1:j2]]
        # comment and blank lines of the replaced span stay (ruamel drops a comment attached to a deleted item)
        given = {line.strip() for line in bkeys[j1:j2]}
        kept: tuple[list[str], list[str]] = ([], [])  # before / after the span's first content line
        content = False
        for line in olines[start:end]:
            text = line.strip()
            if text and not text.startswith("#"):
                content = True
            elif text not in given:
                kept[content].append(line if line.endswith(("\n", "\r")) else line + newline)
        patches.append((start, end, kept[0] + lines + kept[1]))
    out: list[str] = []
    position = 0
    for start, end, lines in patches:
        if start < position:
            return None
        out += olines[position:start]
        if out and not out[-1].endswith(("\n", "\r")):
            out[-1] += newline
        out += lines
        position = end
    out += olines[position:]
    return "".join(out)


def edit(path: Path, old: str | None, change: Callable[[Any], Any]) -> str:
    """The new text of the YAML file ``path`` (current text ``old``, None when absent) after ``change``.

    ``change(data)`` receives the loaded round-trip data (None for a missing or empty file), edits it in place or
    builds it, and returns it. The result keeps every line the edit does not touch (see `splice`), and is parsed
    back and compared with the edited data.

    Raises:
        BadInput: see `load`; whatever ``change`` raises; the result would not read back as the edited data (a bug).
    """
    from provision.render.formats import line_ending

    bom = "\ufeff" if old and old.startswith("\ufeff") else ""
    old = old[len(bom):] if old else old
    newline = line_ending(old or "")
    yaml = _yaml(guess_indent(old))
    data = load(path, old) if old else None
    before = dump(yaml, data)
    data = change(data)
    after = dump(yaml, data)
    intended = plain(data)
    if not old:
        return bom + after
    if before == "":  # only comments, or an empty document: keep them, add ours below
        candidate: str | None = old + ("" if old.endswith(("\n", "\r")) else newline) + after.replace("\n", newline)
    else:
        candidate = splice(old, before, after, newline)
    for text in (candidate, after.replace("\n", newline)):
        if text is None:
            continue
        try:
            if plain(_yaml(guess_indent(text)).load(text)) == intended:
                return bom + text
        except Exception:  # noqa: BLE001 — a splice that does not parse is discarded, the next candidate tried
            continue
    raise BadInput(f"{path} would not read back as intended after the merge", "report this as a bug")


def kind_of(value: Any) -> str:
    """How ``value`` is named in messages: ``a mapping``, ``a list``, ``a string``, with its YAML tag if any."""
    tag = getattr(getattr(value, "tag", None), "value", None)
    kind = {dict: "a mapping", list: "a list", str: "a string"}.get(
        next((t for t in (dict, list, str) if isinstance(value, t)), type(None)), type(value).__name__)
    return f"{tag} {kind}" if tag else kind


def own_mapping(parent: Any, key: str, path: Path, where: str) -> Any:
    """The mapping at ``parent[key]`` written in ``parent`` itself, created (empty) when absent or null.

    Raises:
        BadInput: the value is not a mapping, or comes from a ``<<`` merge key (editing it would change the anchor's
            other users); names the file and the key path ``where``.
    """
    from ruamel.yaml.comments import CommentedMap

    own = dict(parent.non_merged_items()) if hasattr(parent, "non_merged_items") else dict(parent)
    if key not in own and key in parent:
        raise BadInput(f"{path}: {where} comes from a `<<` merge key; provision edits only keys written in place",
                       f"write {where} out in the file")
    value = own.get(key)
    if value is None:
        parent[key] = CommentedMap()
        return parent[key]
    if not isinstance(value, dict):
        raise BadInput(f"{path}: {where} is {kind_of(value)}, not a mapping", "fix or move the file")
    return value
