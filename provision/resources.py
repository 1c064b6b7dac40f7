"""Locating shipped data (templates, example profiles) in a checkout and after ``pip``/``pipx install``."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def packaged(name: str) -> Path:
    """The directory ``name`` (``templates`` or ``envs``) shipped with the package.

    An installed wheel carries it as ``provision/_<name>`` (pyproject's hatch ``force-include``); a source
    checkout has it at the top level, next to the package.

    Raises:
        FileNotFoundError: neither exists (a broken install).
    """
    for candidate in (_PACKAGE / f"_{name}", _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ is missing from the provision installation")
