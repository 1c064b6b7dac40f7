"""Owner marks: what `provision` writes on every resource it creates (a tag, metadata, a label, a line of a
description) naming the environment, the grant and the state's random id, so that another state never adopts it
unknowingly and a re-run recognises what its own earlier run created even when the answer was lost.

One provider-neutral shape (`OwnerMark`) written in three styles: ``tag`` (Azure resource tags,
``provision:env``), ``meta`` (Azure container metadata, ``provisionenv``: names must be C# identifiers,
https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata, and
travel as ``x-ms-meta-<name>`` headers, which proxies that drop or rewrite underscores in header names break, so
the names have none), and
``label`` (Cloud Storage bucket labels: keys and values of lowercase letters, digits, ``_`` and ``-``, at most 63
characters: https://cloud.google.com/storage/docs/tags-and-labels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from provision.errors import BadInput

Style = Literal["tag", "meta", "label"]
_SEPARATOR = {"tag": ":", "meta": "", "label": "_"}
_FIELDS = ("env", "grant", "state")
_LABEL_VALUE = re.compile(r"[^a-z0-9_-]+")
_TEXT = re.compile(r"provision env=(\S+) grant=(\S+) state=([0-9A-Za-z_-]+)")


def label_value(text: str) -> str:
    """``text`` as a Cloud Storage label value: lower-cased, every run of other characters replaced by ``-``,
    cut to 63 characters."""
    return _LABEL_VALUE.sub("-", text.lower())[:63]


@dataclass(frozen=True)
class OwnerMark:
    """Who created a resource.

    Attributes:
        env: the environment's name. grant: the grant's name. state: the state's random id (`GrantState.state_id`).
    """

    env: str
    grant: str
    state: str

    @classmethod
    def of(cls, state: Any) -> OwnerMark:
        """The mark of a grant's record (``env``, ``name``, ``state_id``)."""
        return cls(str(getattr(state, "env", "") or ""), str(getattr(state, "name", "") or ""),
                   str(getattr(state, "state_id", "") or ""))

    def fields(self, style: Style) -> dict[str, str]:
        """The mark as key/value pairs of ``style`` (``provision:env`` / ``provisionenv`` / ``provision_env``);
        label values sanitized (`label_value`). Empty when the state has no id (nothing to recognise it by)."""
        if not self.state:
            return {}
        values = (self.env, self.grant, self.state)
        if style == "label":
            values = tuple(label_value(v) for v in values)
        return {f"provision{_SEPARATOR[style]}{k}": v for k, v in zip(_FIELDS, values, strict=True)}

    def text(self) -> str:
        """The mark as a line of text (a service account's description): ``provision env=E grant=G state=S``."""
        return f"provision env={self.env} grant={self.grant} state={self.state}"

    @classmethod
    def read(cls, found: dict[str, str] | None, style: Style) -> OwnerMark | None:
        """The mark in a resource's tags / metadata / labels (keys compared case-insensitively: Azure returns
        metadata names lower-cased), or None when it carries none."""
        low = {str(k).lower(): str(v) for k, v in (found or {}).items()}
        values = [low.get(f"provision{_SEPARATOR[style]}{k}") for k in _FIELDS]
        if not values[2]:
            return None
        return cls(values[0] or "?", values[1] or "?", values[2])

    @classmethod
    def parse(cls, text: str | None) -> OwnerMark | None:
        """The mark in a description written with `text`, or None."""
        match = _TEXT.search(text or "")
        return cls(*match.groups()) if match else None


def ours(found: OwnerMark | None, state: Any) -> bool:
    """True when ``found`` names this state (its random id): an earlier run of it created the resource."""
    return found is not None and bool(getattr(state, "state_id", "")) and found.state == state.state_id


def check_adoptable(kind: str, name: str, found: OwnerMark | None, state: Any, adopt: bool) -> None:
    """Refuse to adopt a resource another state marked as its own, unless ``adopt`` (``--adopt``).

    Raises:
        BadInput: ``found`` names another state (its env and grant), ``adopt`` is False.
    """
    if found is None or ours(found, state) or adopt:
        return
    raise BadInput(f"{kind} {name!r} belongs to provision environment {found.env!r} (grant {found.grant!r}, "
                   f"state {found.state})", "pass --adopt to use it anyway (destroy leaves it to its owner), or "
                   "choose other names")
