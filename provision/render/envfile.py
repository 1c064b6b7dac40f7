"""Merging managed keys into an existing ``.env``, through python-dotenv's own parser, keeping every byte that is not
a managed value: other lines, comments, ``export`` prefixes, inline comments, line endings and a byte-order mark."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

from provision.errors import BadInput
from provision.render.formats import line_ending

_INLINE_COMMENT = re.compile(r"\s+#.*")
"""python-dotenv's rule for the end of an unquoted value (``dotenv.parser.parse_unquoted_value``): whitespace then
``#`` starts a comment."""


def split_binding(chunk: str) -> tuple[str, str, str, str]:
    """Split one python-dotenv binding chunk (``dotenv.parser.parse_stream``'s ``original.string``) into
    ``(prefix, value, comment, ending)`` that concatenate back to ``chunk``.

    ``prefix`` runs up to the value (leading blank lines, indentation, ``export``, the key, ``=``); ``value`` is the
    value as written (quotes included); ``comment`` the inline comment with the whitespace before it; ``ending`` the
    trailing blanks and line break. The positions are those python-dotenv's reader reaches with its own regexes.
    """
    from dotenv import parser as p

    reader = p.Reader(io.StringIO(chunk))
    reader.read_regex(p._multiline_whitespace)
    reader.read_regex(p._export)
    p.parse_key(reader)
    reader.read_regex(p._whitespace)
    equal_sign = ""
    if reader.peek(1) == "=":
        (equal_sign,) = reader.read_regex(p._equal_sign)
    start = reader.position.chars
    if len(equal_sign) != 1 and reader.peek(1) == "#":  # `KEY= # c`, `KEY # c`: no value (as python-dotenv reads it)
        end = start
        comment_end = start + len(p._comment.match(chunk, start).group(0))  # type: ignore[union-attr]
    elif reader.peek(1) in ("'", '"'):
        p.parse_value(reader)
        end = reader.position.chars
        reader.read_regex(p._comment)
        comment_end = reader.position.chars
    else:
        (part,) = p._unquoted_value.match(chunk, start).groups()  # type: ignore[union-attr]
        found = _INLINE_COMMENT.search(part)
        comment_end = start + len(part)
        end = start + (found.start() if found else len(part.rstrip()))
        if not found:
            comment_end = end
    return chunk[:start], chunk[start:end], chunk[end:comment_end], chunk[comment_end:]


def merge_env(existing: str, block: str, managed: Iterable[str]) -> str:
    """Merge the rendered ``block`` (``KEY=value`` lines and comment lines) into an existing ``.env`` text.

    Parsing is python-dotenv's (``dotenv.parser.parse_stream``), whose chunks concatenate back to the input byte
    for byte. A ``managed`` key present in ``block`` gets its value replaced in place: its leading blank lines,
    indentation, ``export`` prefix, inline comment and line ending are kept. A managed key absent from ``block``
    is removed (its line, not the blank lines before it). Missing keys are appended after ``block``'s comment lines,
    with the line ending most of the file uses. Every other chunk is kept byte for byte, and so is a leading
    byte-order mark.

    Returns:
        The new ``.env`` text.
    """
    from dotenv.parser import parse_stream

    managed = set(managed)
    bom = "\ufeff" if existing.startswith("\ufeff") else ""
    existing = existing[len(bom):]
    newline = line_ending(existing)
    wanted: dict[str, str] = {}
    header: list[str] = []
    for binding in parse_stream(io.StringIO(block)):
        if binding.key:
            wanted[binding.key] = split_binding(binding.original.string)[1]
        elif binding.original.string.strip():
            header.append(binding.original.string.strip())
    out, seen = [], set()
    for binding in parse_stream(io.StringIO(existing)):
        chunk = binding.original.string
        if binding.key in managed and not binding.error:
            prefix, _, comment, ending = split_binding(chunk)
            if binding.value is None:
                prefix += "="  # a bare `KEY` line
            if binding.key in wanted:
                if comment and not comment[0].isspace():
                    comment = " " + comment  # `'old'#c` holds no blank before `#`; a bare value needs one
                out.append(f"{prefix}{wanted[binding.key]}{comment}{ending}")
                seen.add(binding.key)
            else:
                stripped = prefix.lstrip(" \t\r\n")
                lead = prefix[:len(prefix) - len(stripped)]
                out.append(lead[:lead.rfind("\n") + 1] if "\n" in lead else "")
            continue
        out.append(chunk)
    text = "".join(out)
    missing = [f"{key}={value}" for key, value in wanted.items() if key not in seen]
    if missing:
        if text and not text.endswith(("\n", "\r")):
            text += newline
        text += (newline if text.strip() else "") + newline.join(header + missing) + newline
    return bom + text


def check_env(text: str, expected: dict[str, str], managed: Iterable[str], name: str = ".env") -> None:
    """Parse ``text`` back with python-dotenv; refuse unless each key of ``expected`` reads exactly as intended
    and no other ``managed`` key is left.

    Raises:
        BadInput: a value would not read back as written (a bug: the quoting filter is wrong).
    """
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    for key, value in expected.items():
        if values.get(key) != value:
            raise BadInput(f"{key} would not read back as written in {name}", "report this as a bug")
    for key in set(managed) - set(expected):
        if key in values:
            raise BadInput(f"{key} would stay in {name} although this grant does not use it", "report this as a bug")
