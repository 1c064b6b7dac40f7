"""Supervisely links files: one ``<scheme>://<bucket>/<key>`` per line for the objects of the grant's buckets.

Supervisely's Links plugin imports files that stay in the cloud from such a list. The listing is streamed page by
page and each line is written as soon as its object is listed, so memory stays bounded whatever the bucket size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from provision.errors import BadInput
from provision.files import atomic_open
from provision.objects import grant_of, open_stores
from provision.state import GrantState


@dataclass
class LinksReport:
    """What `write_links` wrote.

    Attributes:
        links: lines written, per bucket (in the order written).
        unlinkable: keys skipped because they hold a line break (a links file cannot carry them), per bucket.
    """

    links: dict[str, int] = field(default_factory=dict)
    unlinkable: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All lines written."""
        return sum(self.links.values())


def parse_extensions(values: Iterable[str] | None) -> tuple[str, ...]:
    """Normalise ``--ext`` values (each may hold several, comma-separated) to lower-case suffixes with a dot.

    Args:
        values: e.g. ``[".jpg,.PNG", "webp"]``.

    Returns:
        e.g. ``(".jpg", ".png", ".webp")``; empty when no filter was given.

    Raises:
        BadInput: an empty item or one holding ``/``.
    """
    found: list[str] = []
    for value in values or ():
        for item in value.split(","):
            ext = item.strip().lower()
            if not ext or ext == "." or "/" in ext:
                raise BadInput(f"--ext {value!r} holds an empty or invalid extension",
                               "pass extensions like --ext .jpg,.png")
            ext = ext if ext.startswith(".") else f".{ext}"
            if ext not in found:
                found.append(ext)
    return tuple(found)


def write_links(state: GrantState, out: TextIO, buckets: list[str] | None = None, prefix: str = "",
                extensions: tuple[str, ...] = ()) -> LinksReport:
    """Write one link per matching object to ``out``, bucket after bucket, each in key order, as it is listed.

    Uses the grant's own (read) credential (`provision.objects.open_stores` with ``write=False``: one SDK client
    for all the buckets). Each line is ``<store.url_scheme>://<bucket>/<key>`` (``s3``, ``azure``, ``google``).

    Args:
        state: the environment's state.
        out: a text stream; lines end with ``\\n``.
        buckets: buckets to list (each must belong to the grant); None means all of the grant's, in its order.
        prefix: only keys starting with it.
        extensions: only keys ending with one of these (compared lower-case), e.g. from `parse_extensions`;
            empty means every key.

    Returns:
        The `LinksReport` (counts per bucket).

    Raises:
        BadInput: no grant, or a bucket that is not the grant's.
        CloudRefused: a bucket could not be listed (raised by the store; the lines written so far stay written).
    """
    names = list(buckets) if buckets else list(grant_of(state).buckets)
    stores = open_stores(state, names)  # checks every name before writing anything
    report = LinksReport()
    for store in stores:
        count = skipped = 0
        base = f"{store.url_scheme}://{store.bucket}/"
        for obj in store.list(prefix):
            key = obj.key
            if extensions and not key.lower().endswith(extensions):
                continue
            if "\n" in key or "\r" in key:
                skipped += 1
                continue
            out.write(f"{base}{key}\n")
            count += 1
        report.links[store.bucket] = count
        report.unlinkable[store.bucket] = skipped
    return report


def write_links_file(state: GrantState, path: Path, **kwargs: object) -> LinksReport:
    """`write_links` into ``path``: written to a temporary file next to it and renamed when complete, so a
    failed listing never leaves a truncated links file (mode 0644: links hold no secret).

    Args:
        state: as for `write_links`.
        path: the links file; its directory must exist.
        **kwargs: ``buckets``, ``prefix``, ``extensions`` as for `write_links`.

    Raises:
        BadInput: the directory does not exist; and as for `write_links`.
        CloudRefused: as for `write_links` (``path`` is left untouched).
    """
    if not path.parent.is_dir():
        raise BadInput(f"--out {path}: directory {path.parent} does not exist", "create it first")
    with atomic_open(path, 0o644, text=True) as fh:
        return write_links(state, fh, **kwargs)  # type: ignore[arg-type]
