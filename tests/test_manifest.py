"""`provision manifest`: CVAT's images manifest from ranged header reads, against the enforcing sandbox with a
read-only grant. Real JPEG and PNG files made here with Pillow (up to 4000×3000, EXIF orientations 1, 3, 6, 8, EXIF
blocks big enough to need the 16 and 64 KiB steps), non-images, an empty, a header-truncated and a body-truncated
JPEG, related images; expected sizes come from Pillow on the complete files with CVAT's orientation rule."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from provision.manifest import HEADER_STEPS, build_manifest, probe
from provision.objects import ObjectInfo, open_store
from provision.state import StateStore
from tests.conftest import Admin, Cli, listing_pages, read_grant


def jpeg(size: tuple[int, int], orientation: int | None = None, noise: bool = True, description: str = "") -> bytes:
    img = Image.effect_noise(size, 60) if noise else Image.linear_gradient("L").resize(size)
    exif = Image.Exif()
    if orientation is not None:
        exif[274] = orientation
    if description:
        exif[270] = description
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=90, exif=exif.tobytes() if len(exif) else b"")
    return out.getvalue()


def png(size: tuple[int, int], orientation: int | None = None) -> bytes:
    img = Image.merge("RGB", [Image.effect_noise(size, 40)] * 3)
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[274] = orientation
    img.save(out, "PNG", exif=exif.tobytes() if len(exif) else b"")
    return out.getvalue()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    """Object key -> content, made once per module."""
    big = jpeg((4000, 3000))
    cut = jpeg((1600, 1200), orientation=6)
    made = {
        "photos/big.jpg": big,
        "photos/small.jpg": jpeg((64, 48), noise=False),
        "photos/tiny.PNG": png((10, 10)),
        "photos/o1.jpg": jpeg((1200, 800), orientation=1),
        "photos/o3.jpg": jpeg((1200, 800), orientation=3),
        "photos/o6.jpg": jpeg((1200, 800), orientation=6),
        "photos/o8.jpeg": jpeg((1200, 800), orientation=8),
        "photos/exif10k.jpg": jpeg((2000, 1000), orientation=6, description="x" * 10_000),
        "photos/exif40k.jpg": jpeg((2000, 1000), orientation=8, description="y" * 40_000),
        "photos/sub dir/scan.png": png((1000, 700)),
        "photos/sub dir/rot.png": png((900, 300), orientation=6),
        "photos/related_images/small_jpg/ctx_b.png": png((32, 16)),
        "photos/related_images/small_jpg/ctx_a.jpg": jpeg((16, 32), noise=False),
        "photos/related_images/small_jpg/readme.txt": b"context",
        "photos/notes.txt": b"not an image\n",
        "photos/labels.json": b"{}",
        "photos/broken/empty.jpg": b"",
        "photos/broken/header_cut.jpg": cut[:400],
        "photos/broken/body_cut.jpg": cut[: len(cut) // 2],
        "photos/broken/garbage.png": b"\x89PNG but not really" * 50,
        "other/outside.jpg": jpeg((100, 100), noise=False),
        "model.bin": b"\0" * 5000,
    }
    return made


def expected_size(data: bytes) -> tuple[int, int]:
    """CVAT's rule on the complete file (utils/dataset_manifest/core.py)."""
    img = Image.open(io.BytesIO(data), mode="r")
    orientation = img.getexif().get(274, 1)
    return (img.height, img.width) if orientation > 4 else (img.width, img.height)


@pytest.fixture
def bucket(cli: Cli, admin: Admin, prefix: str, files: dict[str, bytes]) -> str:
    """A read-only grant on ``<prefix>-data``, holding ``files`` (uploaded with the admin key)."""
    result = cli("s3", f"{prefix}-data", "--env", "sandbox", "--readonly")
    assert result.exit_code == 0, result.output
    for key, data in files.items():
        admin.s3.put_object(Bucket=f"{prefix}-data", Key=key, Body=data)
    return f"{prefix}-data"


IMAGES = ["photos/big.jpg", "photos/broken/body_cut.jpg", "photos/exif10k.jpg", "photos/exif40k.jpg", "photos/o1.jpg",
          "photos/o3.jpg",
          "photos/o6.jpg", "photos/o8.jpeg", "photos/small.jpg", "photos/sub dir/rot.png", "photos/sub dir/scan.png",
          "photos/tiny.PNG"]
"""The images under photos/ that the manifest lists (related images excluded), in key order. The JPEG whose body
is cut off is listed: header reads cannot see that the body is missing (CVAT's own tool cannot either)."""


def test_manifest_with_read_only_key_reads_only_headers(bucket: str, files: dict[str, bytes]) -> None:
    state = StateStore("sandbox").load().one(None, "the test")
    assert state.grant is not None and state.grant.access.value == "readonly"
    store = open_store(state, bucket)  # the grant's own read-only key
    manifest = build_manifest(store, "photos", concurrency=6)

    assert manifest.prefix == "photos/"
    names = [e["name"] + e["extension"] for e in manifest.entries]
    assert names == [k[len("photos/"):] for k in IMAGES]
    for entry, key in zip(manifest.entries, IMAGES, strict=True):
        assert list(entry) == ["name", "extension", "width", "height", "meta"]
        assert (entry["width"], entry["height"]) == expected_size(files[key]), key
    by_name = {e["name"]: e for e in manifest.entries}
    assert (by_name["o6"]["width"], by_name["o6"]["height"]) == (800, 1200)
    assert (by_name["o3"]["width"], by_name["o3"]["height"]) == (1200, 800)
    assert (by_name["sub dir/rot"]["width"], by_name["sub dir/rot"]["height"]) == (300, 900)
    assert (by_name["big"]["width"], by_name["big"]["height"]) == (4000, 3000)
    assert by_name["tiny"]["extension"] == ".PNG"
    assert by_name["small"]["meta"] == {"related_images": ["related_images/small_jpg/ctx_a.jpg",
                                                           "related_images/small_jpg/ctx_b.png"]}
    assert all(e["meta"] == {"related_images": []} for e in manifest.entries if e["name"] != "small")

    problems = {p.key: p.error for p in manifest.problems}
    assert set(problems) == {"photos/broken/empty.jpg", "photos/broken/header_cut.jpg",
                             "photos/broken/garbage.png"}
    assert problems["photos/broken/empty.jpg"] == "empty object"
    assert (by_name["broken/body_cut"]["width"], by_name["broken/body_cut"]["height"]) == (1200, 1600)
    stats = manifest.stats
    assert (stats.images, stats.failed, stats.related, stats.skipped) == (len(IMAGES), 3, 2, 3)
    assert stats.bytes_total == sum(len(files[k]) for k in IMAGES + list(problems))
    assert stats.bytes_total > 3_000_000
    assert stats.bytes_read < stats.bytes_total / 20, vars(stats)

    lines = manifest.text().splitlines()
    assert lines[:2] == ['{"version":"1.1"}', '{"type":"images"}']
    assert lines[2] == json.dumps(manifest.entries[0], separators=(",", ":"))
    assert lines[2].startswith('{"name":"big","extension":".jpg","width":4000,"height":3000,"meta":')


def test_header_reads_grow_only_as_needed(bucket: str, files: dict[str, bytes]) -> None:
    store = open_store(StateStore("sandbox").load().one(None, "the test"), bucket)

    def read(key: str) -> Any:
        result = probe(store, ObjectInfo(key, len(files[key])))
        assert result.error is None, result.error
        assert (result.width, result.height) == expected_size(files[key])
        return result

    assert (read("photos/big.jpg").requests, read("photos/big.jpg").bytes_read) == (1, HEADER_STEPS[0])
    assert (read("photos/exif10k.jpg").requests, read("photos/exif10k.jpg").bytes_read) == (2, HEADER_STEPS[1])
    assert (read("photos/exif40k.jpg").requests, read("photos/exif40k.jpg").bytes_read) == (3, HEADER_STEPS[2])
    assert read("photos/small.jpg").bytes_read == len(files["photos/small.jpg"])  # smaller than the first step
    assert read("photos/sub dir/rot.png").requests == 1


def test_cli_upload_uses_admin_credential_and_checksum(cli: Cli, admin: Admin, bucket: str, files: dict[str, bytes],
                                                       workdir: Path) -> None:
    auth = read_grant("sandbox")["grant"]["auth"]
    result = cli("manifest", "--env", "sandbox", "--prefix", "photos/sub dir/", "--upload", "--checksum",
                 "--out", "sub.jsonl")
    assert result.exit_code == 0, result.output
    text = (workdir / "sub.jsonl").read_text()
    lines = text.splitlines()
    assert lines[:2] == ['{"version":"1.1"}', '{"type":"images"}']
    entries = [json.loads(line) for line in lines[2:]]
    assert [e["name"] for e in entries] == ["rot", "scan"]
    for entry in entries:
        data = files[f"photos/sub dir/{entry['name']}.png"]
        assert list(entry) == ["name", "extension", "width", "height", "meta", "checksum"]
        assert entry["checksum"] == hashlib.md5(Image.open(io.BytesIO(data)).tobytes()).hexdigest()
        assert (entry["width"], entry["height"]) == expected_size(data)
    uploaded = admin.s3.get_object(Bucket=bucket, Key="photos/sub dir/manifest.jsonl")["Body"].read()
    assert uploaded.decode() == text
    assert "with the admin credential" in " ".join(result.stderr.split())
    assert auth["secret_key"] not in result.stdout + result.stderr
    key_client = admin.client("s3", auth["access_key"], auth["secret_key"])
    with pytest.raises(ClientError):  # the grant's key really is read-only
        key_client.put_object(Bucket=bucket, Key="photos/sub dir/manifest.jsonl", Body=b"x")

    # --checksum reads whole files, so a JPEG with its body cut off is reported too; problems are not fatal.
    broken = cli("manifest", "--env", "sandbox", "--prefix", "photos/broken", "--checksum", "--json", "--upload")
    assert broken.exit_code == 0, broken.output
    report = json.loads(broken.stdout)
    assert {p["key"] for p in report["problems"]} == {f"photos/broken/{n}" for n in (
        "empty.jpg", "header_cut.jpg", "body_cut.jpg", "garbage.png")}
    assert report["stats"]["images"] == 0 and report["uploaded"] is None
    assert (workdir / "manifest.jsonl").read_text() == '{"version":"1.1"}\n{"type":"images"}\n'
    with pytest.raises(ClientError):  # an empty manifest is not uploaded
        admin.s3.head_object(Bucket=bucket, Key="photos/broken/manifest.jsonl")


def test_refusals_are_cloud_refused_with_operation_bucket_and_code(cli: Cli, admin: Admin, bucket: str) -> None:
    """A missing object is one image's problem (the run goes on); a write with the read-only key and a listing of a
    bucket that is gone are `CloudRefused`: one line naming the operation, the bucket and S3's code (exit 3)."""
    from provision.errors import CloudRefused
    from provision.manifest import Manifest, upload_manifest
    from provision.providers.aws import S3Objects

    store = open_store(StateStore("sandbox").load().one(None, "the test"), bucket)  # the read-only key
    result = probe(store, ObjectInfo("photos/gone.jpg", 50_000))
    assert result.error is not None and result.error.startswith(
        f"read failed: S3 GetObject on bucket '{bucket}', key 'photos/gone.jpg' failed: NoSuchKey"), result.error

    with pytest.raises(CloudRefused) as refused:
        upload_manifest(store, Manifest(prefix="photos/"))
    assert str(refused.value).startswith(
        f"S3 PutObject on bucket '{bucket}', key 'photos/manifest.jsonl' failed: AccessDenied")
    assert "\n" not in str(refused.value)

    import boto3
    from botocore.config import Config

    unreachable = S3Objects(boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                                         aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x" * 40,
                                         config=Config(retries={"max_attempts": 1}, connect_timeout=2)), bucket)
    with pytest.raises(CloudRefused) as refused:
        list(unreachable.list())
    assert str(refused.value).startswith(f"S3 ListObjectsV2 on bucket '{bucket}' failed: EndpointConnectionError")

    for key in [o["Key"] for o in admin.s3.list_objects_v2(Bucket=bucket)["Contents"]]:
        admin.s3.delete_object(Bucket=bucket, Key=key)
    admin.s3.delete_bucket(Bucket=bucket)
    result = cli("manifest", "--env", "sandbox", "--out", "m.jsonl")
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: S3 ListObjectsV2 on bucket '{bucket}' failed: NoSuchBucket"), lines


def test_images_are_read_while_the_listing_goes_on(cli: Cli, admin: Admin, prefix: str) -> None:
    """150 image keys are 2 pages of ListObjectsV2 under a 100-key page cap (the sandbox's ``/_sandbox/limits``;
    S3's 1,000-key pages work alike): the first image reads reach the server before the second page is requested
    (reading does not wait for the whole listing); the result is still in key order."""
    from concurrent.futures import ThreadPoolExecutor

    assert cli("s3", f"{prefix}-many", "--env", "sandbox", "--readonly").exit_code == 0
    bucket = f"{prefix}-many"
    keys = [f"img/{i:05d}.jpg" for i in range(150)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: admin.s3.put_object(Bucket=bucket, Key=k, Body=b"not a jpeg"), reversed(keys)))
    store = open_store(StateStore("sandbox").load().one(None, "the test"), bucket)
    read_one = threading.Event()
    waited: list[bool] = []

    class Store:
        """The real store; its listing holds the second page back until one image read has been answered
        (at most 30 s), so the order below does not depend on thread scheduling."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def list(self, prefix: str) -> Any:
            for n, obj in enumerate(store.list(prefix)):
                yield obj
                if n == 99:  # the last key of the first page: the second is requested after this
                    waited.append(read_one.wait(30))

        def read(self, key: str) -> bytes:
            try:
                return store.read(key)
            finally:
                read_one.set()

        def read_range(self, key: str, start: int, length: int) -> bytes:
            try:
                return store.read_range(key, start, length)
            finally:
                read_one.set()

    admin.reset_log()
    with listing_pages(admin.info.s3.endpoint_url, 100):
        manifest = build_manifest(Store(), "img/", concurrency=4)  # type: ignore[arg-type]
    assert waited == [True]  # an image was read while the listing was still on its first page
    assert [p.key for p in manifest.problems] == keys  # every "image" was read (and found not to be one)
    log = [e for e in admin.log() if e["method"] == "GET"]
    lists = [i for i, e in enumerate(log) if "list-type=2" in e["query"]]
    assert len(lists) == 2 and len(log) == 2 + len(keys)
    assert any(i < lists[1] for i, e in enumerate(log) if "list-type=2" not in e["query"]), lists


def test_first_read_is_sized_to_the_object() -> None:
    """Small images cost at most max(5 %, 1 KiB) in the common case; large ones read CVAT's 2/16/64 KiB steps."""
    from provision.manifest import header_steps

    assert header_steps(6_000) == (1024, 2048, 16 * 1024, 64 * 1024)
    assert header_steps(30_000) == (1500, 2048, 16 * 1024, 64 * 1024)
    assert header_steps(3_000_000) == HEADER_STEPS
    for size in (6_000, 20_000, 73_000, 3_000_000):
        assert header_steps(size)[0] <= max(0.05 * size, 1024)
