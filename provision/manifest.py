"""CVAT's images manifest (``manifest.jsonl``) from a bucket listing and ranged reads of each image's header.

CVAT's own tool (cvat-ai/cvat ``utils/dataset_manifest/create.py``) needs every image on local disk; here only the
first few KiB of each image are read, through the provider-neutral `provision.objects.ObjectStore`, and Pillow
reads the size and EXIF orientation from them. The output is what CVAT's tool writes for the same files
(``utils/dataset_manifest/core.py``, ``ImageManifestManager``/``DatasetImagesReader``):

* line 1 ``{"version":"1.1"}``, line 2 ``{"type":"images"}``, compact JSON (``separators=(",", ":")``);
* then one line per image, in key order (the tool's default lexicographic sort):
  ``{"name":<path from the manifest's folder, no extension>,"extension":".jpg","width":W,"height":H,
  "meta":{"related_images":[...]}[,"checksum":<md5>]}``;
* images are the keys whose MIME type (Python's ``mimetypes``) is ``image/*`` but not SVG, and keys with
  ``related_images/`` in their path are not images of their own: they are listed in the ``meta`` of the image they
  belong to (``<dir>/related_images/<name>_<ext>/``), as CVAT's 2D rule does;
* width and height are swapped when the EXIF orientation (tag 274) is greater than 4;
* ``checksum`` (only with ``checksum=True``) is CVAT's ``md5_hash``: the MD5 of the *decoded pixels*
  (``Image.tobytes()``), not of the file — it is what CVAT's server compares when it reads the image.

Header reads grow like CVAT's server does (2, 16, 64 KiB, then the whole object), only when Pillow needs more.
On a partial read the orientation comes from the metadata Pillow parsed while reading the header (EXIF, XMP);
an EXIF chunk stored *after* the pixel data of a PNG is only seen when the whole file is read (``checksum=True``).
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import posixpath
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import BadInput, CloudRefused, one_line
from provision.files import atomic_write
from provision.objects import ObjectInfo, ObjectStore, grant_of, open_store
from provision.state import GrantState

MANIFEST_NAME = "manifest.jsonl"
HEADER_LINES = ('{"version":"1.1"}', '{"type":"images"}')
HEADER_STEPS = (2 * 1024, 16 * 1024, 64 * 1024)
"""Bytes read from the start of an image before reading the whole object (CVAT's server uses the same steps)."""
FIRST_READ_MIN = 1024
FIRST_READ_SHARE = 0.05
"""The first read is sized to the object: min(2 KiB, max(1 KiB, 5 % of its size)), so a small image costs at most
max(5 %, 1 KiB) in the common case (a JPEG's size marker sits within its first few hundred bytes)."""


def header_steps(size: int) -> tuple[int, ...]:
    """The cumulative read sizes (bytes) for an object of ``size`` bytes: the first sized to the object (see
    `FIRST_READ_SHARE`), then `HEADER_STEPS`."""
    first = min(HEADER_STEPS[0], max(FIRST_READ_MIN, int(size * FIRST_READ_SHARE)))
    return (first, *(step for step in HEADER_STEPS if step > first))
ORIENTATION = 274
RELATED = "related_images"


@dataclass
class ManifestStats:
    """Counts of one run.

    Attributes:
        images: image lines in the manifest.
        skipped: keys that are not images (by MIME type), folder objects excluded.
        related: related (context) images, listed in another image's ``meta`` rather than as lines.
        failed: images that could not be read (see `Manifest.problems`); not in the manifest.
        bytes_read: bytes downloaded, all reads together.
        bytes_total: total size in bytes of the image objects considered (lines + failed).
        requests: GET requests made (ranged or whole).
    """

    images: int = 0
    skipped: int = 0
    related: int = 0
    failed: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    requests: int = 0


@dataclass(frozen=True)
class Problem:
    """An image left out of the manifest: its key and why (one line)."""

    key: str
    error: str


@dataclass
class Manifest:
    """A built manifest.

    Attributes:
        prefix: the folder (key prefix, ending in ``/``, or empty for the bucket root) the names are relative to,
            where ``manifest.jsonl`` belongs.
        entries: one dict per image line, fields in CVAT's order.
        problems: images that could not be read, in key order.
        stats: counts and bytes.
    """

    prefix: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stats: ManifestStats = field(default_factory=ManifestStats)

    @property
    def key(self) -> str:
        """The object key the manifest is uploaded to: ``<prefix>manifest.jsonl``."""
        return f"{self.prefix}{MANIFEST_NAME}"

    def text(self) -> str:
        """The ``manifest.jsonl`` content: the two header lines and one compact JSON line per image."""
        lines = list(HEADER_LINES)
        lines += [json.dumps(e, separators=(",", ":"), ensure_ascii=True) for e in self.entries]
        return "\n".join(lines) + "\n"


def is_image(key: str) -> bool:
    """CVAT's rule (``utils/dataset_manifest/utils.py`` ``is_image``): the MIME type guessed from the name is
    ``image/*`` and not SVG."""
    kind = mimetypes.guess_type(key)[0]
    return kind is not None and kind.startswith("image") and not kind.startswith("image/svg")


def folder_prefix(prefix: str | None) -> str:
    """``prefix`` as a folder: empty (the bucket root) or ending in exactly one ``/``.

    Raises:
        BadInput: the prefix holds a line break or NUL.
    """
    prefix = (prefix or "").strip()
    if any(c in prefix for c in "\r\n\0"):
        raise BadInput(f"invalid --prefix {prefix!r}", "give a folder of the bucket, e.g. images/train/")
    prefix = prefix.rstrip("/")
    return f"{prefix}/" if prefix else ""


def _size(img: Any, orientation: Any) -> tuple[int, int]:
    width, height = img.width, img.height
    try:
        swap = int(orientation) > 4
    except (TypeError, ValueError):
        swap = False
    return (height, width) if swap else (width, height)


def _from_header(data: bytes) -> tuple[int, int]:
    """Width and height (orientation applied) from the first bytes of an image; raises when Pillow needs more."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        # The base implementation reads only metadata parsed with the header; PNG's own getexif() would decode
        # the whole image to look for trailing chunks.
        return _size(img, Image.Image.getexif(img).get(ORIENTATION, 1))


def _from_file(data: bytes, checksum: bool) -> tuple[int, int, str | None]:
    """CVAT's exact computation on the complete file: size, orientation from ``getexif()``, optional md5 of the
    decoded pixels."""
    from PIL import Image

    with Image.open(io.BytesIO(data), mode="r") as img:
        width, height = _size(img, img.getexif().get(ORIENTATION, 1))
        digest = hashlib.md5(img.tobytes()).hexdigest() if checksum else None  # noqa: S324 (CVAT's checksum)
    return width, height, digest


@dataclass
class ProbeResult:
    """What `probe` found for one object.

    Attributes:
        width, height: in pixels, EXIF orientation applied (0 when ``error`` is set).
        checksum: CVAT's checksum (md5 hex of the decoded pixels), only when asked for.
        error: why the image is left out (one line), or None.
        bytes_read: bytes downloaded for this object.
        requests: GET requests made for this object.
    """

    width: int = 0
    height: int = 0
    checksum: str | None = None
    error: str | None = None
    bytes_read: int = 0
    requests: int = 0


def probe(store: ObjectStore, obj: ObjectInfo, checksum: bool = False) -> ProbeResult:
    """Read one image's size (and optionally its checksum) with as few bytes as Pillow needs.

    Reads 2, 16 and 64 KiB from the start (each step fetches only the bytes not yet read) and stops as soon as
    Pillow can read the header; else reads the rest and applies CVAT's rule to the complete file. With
    ``checksum`` the whole object is read at once.

    Returns:
        A result with width/height (and checksum), or ``error`` set (empty object, unreadable image, or a read
        the store refused with `provision.errors.CloudRefused`); never raises for one bad object.
    """
    result = ProbeResult()
    if obj.size == 0:
        result.error = "empty object"
        return result

    def fetch(start: int, length: int | None) -> bytes:
        data = store.read(obj.key) if length is None else store.read_range(obj.key, start, length)
        result.requests += 1
        result.bytes_read += len(data)
        return data

    from PIL import Image

    try:
        data = b""
        if not checksum:
            for step in header_steps(obj.size):
                if step >= obj.size:
                    break
                data += fetch(len(data), step - len(data))
                try:
                    result.width, result.height = _from_header(data)
                    return result
                except Image.DecompressionBombError as exc:
                    result.error = one_line(exc)
                    return result
                except Exception:  # noqa: BLE001 — Pillow signals "not enough data" with many error types
                    continue
        data = data + fetch(len(data), obj.size - len(data)) if data else fetch(0, None)
    except CloudRefused as exc:  # one object the store would not give: report it, go on
        result.error = f"read failed: {one_line(exc)}"
        return result
    try:
        result.width, result.height, result.checksum = _from_file(data, checksum)
    except Image.UnidentifiedImageError:
        result.error = "not an image Pillow can read (unknown format, or the header is cut off)"
    except Exception as exc:  # noqa: BLE001 — a corrupt or truncated image is reported, not fatal
        result.error = one_line(exc)
    return result


def _related_images(images: list[str], keys: set[str], folders: set[str]) -> dict[str, list[str]]:
    """CVAT's 2D rule (``_detect_related_images_2D``): the images directly inside
    ``<dir>/related_images/<name>_<ext>/`` belong to ``<dir>/<name>.<ext>``; paths relative to the root."""
    by_folder: dict[str, list[str]] = {}
    for key in keys:
        folder, _, leaf = key.rpartition("/")
        if leaf and f"/{RELATED}/" in f"/{folder}/" and is_image(key):
            by_folder.setdefault(folder, []).append(key)
    related: dict[str, list[str]] = {}
    for image in images:
        directory, _, leaf = image.rpartition("/")
        base = f"{directory}/{RELATED}" if directory else RELATED
        if base not in folders:
            related[image] = []
            continue
        stem, dot, ext = leaf.rpartition(".")
        folder = f"{base}/{stem}_{ext}" if dot else f"{base}/{leaf}"
        related[image] = sorted(by_folder.get(folder, []))
    return related


def _kind(name: str, size: int) -> str:
    """What a key (relative to the manifest's folder) is: ``folder`` (a zero-byte ``.../`` object), ``related
    image`` or ``related other`` (under a ``related_images/`` folder), ``image`` (a line of its own), ``other``."""
    if name.endswith("/") and size == 0:
        return "folder"
    if f"{RELATED}/" in name:
        return "related image" if is_image(name) else "related other"
    return "image" if is_image(name) else "other"


def build_manifest(store: ObjectStore, prefix: str = "", *, checksum: bool = False, concurrency: int = 8,
                   on_total: Callable[[int], None] | None = None,
                   on_image: Callable[[str], None] | None = None) -> Manifest:
    """Build CVAT's images manifest for the objects under ``prefix`` (see the module docstring for the format).

    Args:
        store: the bucket; read access is enough (the grant's read-only key).
        prefix: the folder the images are in, where ``manifest.jsonl`` will sit; names are relative to it.
            Normalised by `folder_prefix`.
        checksum: add CVAT's ``checksum`` (md5 of the decoded pixels); reads every image completely.
        concurrency: images read in parallel (threads), 1–64.
        on_total: called once with the number of images, after listing.
        on_image: called with each image's key when it is done (from worker threads; images are read as soon as
            their page of the listing arrives, so this may come before ``on_total``).

    Returns:
        The manifest (entries in key order, problems, stats).

    Raises:
        BadInput: ``concurrency`` out of range; an invalid prefix.
        CloudRefused: the bucket cannot be listed.
    """
    if not 1 <= concurrency <= 64:
        raise BadInput(f"--concurrency {concurrency} is out of range", "use 1–64")
    prefix = folder_prefix(prefix)
    manifest = Manifest(prefix=prefix)
    stats = manifest.stats

    def work(obj: ObjectInfo) -> ProbeResult:
        result = probe(store, obj, checksum)
        if on_image:
            on_image(obj.key)
        return result

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="manifest") as pool:
        listing: list[ObjectInfo] = []
        reads: dict[str, Future[ProbeResult]] = {}
        try:
            for obj in store.list(prefix):  # the store raises CloudRefused
                listing.append(obj)
                if _kind(obj.key[len(prefix):], obj.size) == "image":  # read while the next page is listed
                    reads[obj.key] = pool.submit(work, obj)
        except BaseException:
            for read in reads.values():
                read.cancel()
            raise
        listing.sort(key=lambda o: o.key)
        rel = {o.key: o.key[len(prefix):] for o in listing}
        folders = {posixpath.dirname(r) for r in rel.values()}
        folders |= {f.rsplit("/", i)[0] for f in list(folders) for i in range(1, f.count("/") + 1)}
        images: list[ObjectInfo] = []
        for obj in listing:
            kind = _kind(rel[obj.key], obj.size)
            if kind == "image":
                images.append(obj)
            elif kind == "related image":
                stats.related += 1
            elif kind in ("other", "related other"):
                stats.skipped += 1
        related = _related_images([rel[o.key] for o in images], set(rel.values()), folders)
        if on_total:
            on_total(len(images))
        results = [reads[o.key].result() for o in images]
    for obj, result in zip(images, results, strict=True):
        stats.bytes_read += result.bytes_read
        stats.bytes_total += obj.size
        stats.requests += result.requests
        if result.error:
            stats.failed += 1
            manifest.problems.append(Problem(obj.key, result.error))
            continue
        name, extension = posixpath.splitext(rel[obj.key])
        entry: dict[str, Any] = {"name": name.replace("\\", "/"), "extension": extension,
                                 "width": result.width, "height": result.height,
                                 "meta": {"related_images": related[rel[obj.key]]}}
        if checksum:
            entry["checksum"] = result.checksum
        manifest.entries.append(entry)
    stats.images = len(manifest.entries)
    return manifest


def upload_manifest(store: ObjectStore, manifest: Manifest) -> str:
    """Put ``manifest.jsonl`` next to the images (at ``manifest.key``).

    Args:
        store: the bucket opened for writing (`provision.objects.open_store` with ``write=True``: the grant's
            own key only when it is ``full``, otherwise the admin credential — a read-only key is never given
            write access for this).
        manifest: from `build_manifest`.

    Returns:
        The object key written.

    Raises:
        CloudRefused: the store refused the write.
    """
    store.put_bytes(manifest.key, manifest.text().encode(), content_type="application/jsonl")
    return manifest.key


@dataclass
class ManifestRun:
    """What `make_manifest` did.

    Attributes:
        bucket: the bucket listed.
        out: the file written (absolute).
        manifest: the `Manifest` built.
        url_scheme: the store's URL scheme (``s3``, ``azure``, ``google``).
        upload: an upload was asked for.
        uploaded: the key the manifest was uploaded to, or None.
        own_credential: the upload used the grant's own credential (else the admin credential).
    """

    bucket: str
    out: Path
    manifest: Manifest
    url_scheme: str
    upload: bool = False
    uploaded: str | None = None
    own_credential: bool = False


def make_manifest(state: GrantState, bucket: str | None = None, prefix: str = "", out: Path = Path(MANIFEST_NAME), *,
                  upload: bool = False, checksum: bool = False, concurrency: int = 8,
                  on_total: Callable[[int], None] | None = None,
                  on_image: Callable[[str], None] | None = None) -> ManifestRun:
    """Build the manifest of the images under ``prefix`` in a bucket of the stored grant (`build_manifest`, with
    the grant's read credential), write it to ``out`` (mode 0644: it holds no secret), and with ``upload`` put it
    next to the images (`upload_manifest`; the grant's credential when it is ``full``, else the admin one).

    Args:
        state: the environment's state; its grant must be set.
        bucket: one of the grant's buckets (default: its first).
        prefix, checksum, concurrency, on_total, on_image: as in `build_manifest`.
        out: the file, or an existing directory to write ``manifest.jsonl`` into (made absolute).
        upload: upload it too (nothing is uploaded when no image was found).

    Returns:
        The `ManifestRun`.

    Raises:
        BadInput: no grant; a bucket that is not the grant's; ``out``'s directory does not exist or is not
            writable; what `build_manifest` raises.
        CloudRefused: the bucket cannot be listed, or the upload was refused.
    """
    from provision.providers.base import grant_credential

    grant = grant_of(state)
    bucket = bucket or grant.buckets[0]
    out = out.absolute()
    if out.is_dir():
        out = out / MANIFEST_NAME
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: directory {out.parent} does not exist", "create it, or pass another --out")
    source = open_store(state, bucket)
    manifest = build_manifest(source, prefix, checksum=checksum, concurrency=concurrency, on_total=on_total,
                              on_image=on_image)
    try:
        atomic_write(out, manifest.text().encode(), mode=0o644)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror}", "pass a writable --out") from None
    run = ManifestRun(bucket=bucket, out=out, manifest=manifest, url_scheme=source.url_scheme, upload=upload)
    if upload and manifest.stats.images:
        run.uploaded = upload_manifest(open_store(state, bucket, write=True), manifest)
        run.own_credential = grant_credential(grant, write=True) is not None
    return run
