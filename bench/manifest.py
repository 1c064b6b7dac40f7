"""Manifest benchmark: ``provision manifest`` vs "download everything, then open each file with Pillow" vs the
bare ranged-GET floor, on loopback and over a WAN link.

CVAT's guide makes ``manifest.jsonl`` with its ``utils/dataset_manifest/create.py``, which needs every image on local
disk: the bucket is downloaded first, then each file is opened with Pillow for its size (and EXIF orientation).
``provision manifest`` reads only the first few KiB of each image (ranged GETs of 2, then 16, then 64 KiB).

Two image sets (``--sets``), generated once: ``large``, ``--images`` JPEGs (default 500) of about 1-3 MB (crops of a
random-noise canvas, so they really are that big; every 10th with an EXIF orientation of 6, 8 or 3), and ``small``,
as many JPEGs of about 6-73 KB (crops of 80-330 px). For each link of ``--loopback`` / ``--wan`` (both by default;
``--rtt-ms 30 --mbit 100``: see `common.Site`), a fresh sandbox with a read-only grant on one bucket (``provision s3
<bucket> --env sandbox --readonly``), the set uploaded with the admin key (on the sandbox's own port), then per round
(``--rounds``, default 3; the order of the methods rotates), each a subprocess with the grant's read-only key and 8
requests in parallel:

- ``provision manifest --env sandbox --bucket B --json``;
- ``download + Pillow`` (the guide's way, the target's baseline): ``list_objects_v2``, ``download_file`` of every
  object into a temp dir, then Pillow opens each file (width, height, EXIF orientation, CVAT's swap above 4);
- ``ranged-GET floor``: ``list_objects_v2`` and one ``GET Range: bytes=0-2047`` per object, nothing parsed: the
  least any header reader does;
- with ``--create-py``: ``download + create.py``, the baseline plus what CVAT's ``create.py`` really does per image
  (``prepare_meta(..., use_image_hash=True)``: the MD5 of the decoded pixels), for reference.

For each: wall seconds of the subprocess (start-up included), bytes read (counted by the client: provision's
``stats.bytes_read``, the downloaded files' sizes, the ranged bodies) and GET requests (the sandbox's request log).
The two manifests' sizes are compared image by image. Prints the medians and the targets: large, ``>= 5x faster than
download + Pillow, <= 1.2x the floor's time, <= 5 % of the bytes``; small, ``<= max(5 %, 1 KiB per image) of the
bytes``. ``--json-out FILE`` saves the medians. It only prints figures; it never asserts. Run from the repo root:
``.venv/bin/python bench/manifest.py [--images N] [--rounds N] [--wan | --loopback]``. ~5-10 minutes at full size.
The sandbox (moto) is one Python process on the same machine: other load moves the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import PROVISION, Site, add_link_args, ensure_bytecode, link_name, modes, on_sigterm, provision_source

BUCKET = "bench-manifest-images"
PARALLEL = 8  # provision manifest's default --concurrency; the other methods use as many threads
GUIDE, MINE, FLOOR_NAME = "download + Pillow", "provision manifest", "ranged-GET floor"

BASELINE = r'''
"""The guide's way: download every object, then open each file with Pillow.
argv: endpoint key secret bucket dir parallel [hash]
With "hash", also CVAT create.py's checksum (md5 of the pixels)."""
import hashlib, json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

started = time.perf_counter()
import boto3
from botocore.config import Config
from PIL import Image

endpoint, key, secret, bucket, folder = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                  aws_secret_access_key=secret,
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])]

def download(obj):
    path = Path(folder) / obj["Key"]
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, obj["Key"], str(path))
    return path.stat().st_size

with ThreadPoolExecutor(int(sys.argv[6])) as pool:
    downloaded = sum(pool.map(download, objects))
sizes = {}
for obj in objects:  # what CVAT's create.py does per image: open it, read the size and the EXIF orientation
    with Image.open(Path(folder) / obj["Key"]) as img:
        width, height = img.width, img.height
        if int(img.getexif().get(274, 1)) > 4:
            width, height = height, width
        if sys.argv[7:] == ["hash"]:  # create.py calls prepare_meta(..., use_image_hash=True)
            hashlib.md5(img.tobytes()).hexdigest()
    sizes[obj["Key"]] = [width, height]
print(json.dumps({"bytes_read": downloaded, "images": len(sizes), "sizes": sizes,
                  "seconds_inside": time.perf_counter() - started}))
'''

FLOOR = r'''
"""The bare ranged-GET floor: list the bucket, one GET of the first 2 KiB of every object, nothing parsed.
argv: endpoint key secret bucket parallel"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

endpoint, key, secret, bucket, parallel = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                  aws_secret_access_key=secret,
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])]

def head(obj):
    return len(s3.get_object(Bucket=bucket, Key=obj["Key"], Range="bytes=0-2047")["Body"].read())

with ThreadPoolExecutor(int(parallel)) as pool:
    got = sum(pool.map(head, objects))
print(json.dumps({"bytes_read": got, "images": len(objects), "sizes": {}}))
'''


def make_images(n: int, seed: int = 7, small: bool = False) -> dict[str, bytes]:
    """``n`` JPEGs of about 1-3 MB (``small``: 6-73 KB): crops of one random-noise canvas; every 10th has an EXIF
    orientation."""
    from PIL import Image

    rng = random.Random(seed)
    canvas = Image.frombytes("RGB", (2600, 2000), rng.randbytes(2600 * 2000 * 3))
    images: dict[str, bytes] = {}
    for i in range(n):
        width = rng.randint(80, 330) if small else rng.randint(1300, 2000)
        height = width * 3 // 4
        left, top = rng.randint(0, 2600 - width), rng.randint(0, 2000 - height)
        exif = Image.Exif()
        if i % 10 == 0:
            exif[274] = (6, 8, 3)[(i // 10) % 3]
        out = io.BytesIO()
        canvas.crop((left, top, left + width, top + height)).save(
            out, "JPEG", quality=rng.randint(88, 92), exif=exif.tobytes() if len(exif) else b"")
        images[f"dataset/batch {i % 5}/img_{i:04d}.jpg"] = out.getvalue()
    return images


def get_requests(site: Site) -> int:
    return sum(1 for e in site.control("requests") if e["method"] == "GET" and e["service"] == "s3")


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def run_method(name: str, site: Site, key: str, secret: str, work: Path) -> dict[str, Any]:
    """One run of one method; {"seconds", "bytes", "images", "sizes": {key: [w, h]}, "gets"}."""
    site.control("requests/reset")
    if name == MINE:
        seconds, doc = timed([PROVISION, "manifest", "--env", "sandbox", "--bucket", BUCKET, "--json",
                              "--out", str(work / "manifest.jsonl")], site.env, work)
        got = {}
        for line in (work / "manifest.jsonl").read_text().splitlines()[2:]:
            entry = json.loads(line)
            got[entry["name"] + entry["extension"]] = [entry["width"], entry["height"]]
        row = {"seconds": seconds, "bytes": doc["stats"]["bytes_read"], "images": doc["stats"]["images"],
               "sizes": got}
    elif name == FLOOR_NAME:
        (work / "floor.py").write_text(FLOOR)
        seconds, doc = timed([sys.executable, str(work / "floor.py"), site.endpoint, key, secret, BUCKET,
                              str(PARALLEL)], site.env, work)
        row = {"seconds": seconds, "bytes": doc["bytes_read"], "images": doc["images"], "sizes": {}}
    else:
        (work / "baseline.py").write_text(BASELINE)
        extra = ["hash"] if name == "download + create.py" else []
        seconds, doc = timed([sys.executable, str(work / "baseline.py"), site.endpoint, key, secret, BUCKET,
                              str(work / "download"), str(PARALLEL), *extra], site.env, work)
        row = {"seconds": seconds, "bytes": doc["bytes_read"], "images": doc["images"], "sizes": doc["sizes"]}
        shutil.rmtree(work / "download", ignore_errors=True)
    row["gets"] = get_requests(site)
    return row


def bench_set(set_name: str, images: dict[str, bytes], link: Any, tmp: Path, methods: list[str],
              rounds: int) -> dict[str, Any]:
    """All rounds of one image set over one link, in a fresh sandbox; prints the table, returns the medians."""
    total = sum(len(b) for b in images.values())
    site = Site(tmp / f"state-{set_name}-{'wan' if link else 'loopback'}", link)
    try:
        site.provision("s3", BUCKET, "--env", "sandbox", "--readonly", "--json")
        [record] = json.loads((site.state / "sandbox.json").read_text())["grants"].values()  # state v2: one grant
        auth = record["grant"]["auth"]  # the read-only key
        key, secret = auth["access_key"], auth["secret_key"]
        admin = site.client()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: admin.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), images.items()))
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
        for round_ in range(rounds):
            for name in methods[round_ % len(methods):] + methods[:round_ % len(methods)]:
                work = tmp / f"work-{set_name}-{round_}-{methods.index(name)}"
                work.mkdir()
                row = run_method(name, site, key, secret, work)
                shutil.rmtree(work, ignore_errors=True)
                results[name].append(row)
                print(f"{link_name(link)} {set_name} round {round_ + 1}: {name}: {row['seconds']:.2f} s, "
                      f"{row['bytes'] / 1e6:.2f} MB read, {row['gets']} GET requests", flush=True)
    finally:
        site.down()

    def med(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    agree = sum(1 for k, v in results[GUIDE][0]["sizes"].items() if results[MINE][0]["sizes"].get(k) == v)
    print(f"\n{link_name(link)}, {set_name}: {len(images)} JPEGs, {total / 1e6:.1f} MB; medians of {rounds} "
          f"round(s); MB = 10^6 bytes")
    head = (f"{'method':<20} {'seconds':>8} {'x provision':>12} {'MB read':>9} {'of total':>9} {'per image':>10} "
            f"{'GET requests':>13} {'images':>7}")
    print(head)
    print("-" * len(head))
    summary: dict[str, Any] = {"images": len(images), "total_bytes": total, "agree": agree}
    for name in methods:
        per = med(name, "bytes") / len(images)
        print(f"{name:<20} {med(name, 'seconds'):>8.2f} {med(name, 'seconds') / med(MINE, 'seconds'):>12.2f} "
              f"{med(name, 'bytes') / 1e6:>9.2f} {med(name, 'bytes') / total:>9.2%} {per:>8.0f} B "
              f"{med(name, 'gets'):>13.0f} {med(name, 'images'):>7.0f}")
        summary[name] = {"seconds": med(name, "seconds"), "bytes": med(name, "bytes"), "gets": med(name, "gets")}
    print(f"same width/height for {agree} of {len(images)} images")
    return summary


def verdicts(title: str, rows: dict[str, Any], set_name: str) -> None:
    mine, guide, floor = rows[MINE], rows[GUIDE], rows[FLOOR_NAME]
    share = mine["bytes"] / rows["total_bytes"]
    if set_name == "small":
        limit = max(0.05 * rows["total_bytes"], 1024 * rows["images"])
        print(f"  {title}: bytes {share:.2%} ({mine['bytes'] / rows['images']:.0f} B per image) vs <= "
              f"max(5 %, 1 KiB per image) -> {'met' if mine['bytes'] <= limit else 'NOT met'}")
        return
    speed = guide["seconds"] / mine["seconds"]
    vs_floor = mine["seconds"] / floor["seconds"]
    print(f"  {title}: {speed:.1f}x faster than {GUIDE} (>= 5x) -> {'met' if speed >= 5 else 'NOT met'}; "
          f"{vs_floor:.2f}x the floor's time (<= 1.2x) -> {'met' if vs_floor <= 1.2 else 'NOT met'}; "
          f"bytes {share:.2%} (<= 5 %) -> {'met' if share <= 0.05 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="JPEGs per set")
    parser.add_argument("--sets", default="large,small", help="image sets: large (1-3 MB), small (6-73 KB)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each method (median reported)")
    parser.add_argument("--create-py", action="store_true", help="also time download + create.py's checksums")
    parser.add_argument("--json-out", help="write the medians to this file")
    add_link_args(parser)
    args = parser.parse_args()
    on_sigterm()
    ensure_bytecode()
    methods = [MINE, GUIDE, FLOOR_NAME] + (["download + create.py"] if args.create_py else [])
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-manifest-"))
    summary: dict[str, Any] = {}
    print(f"{os.cpu_count()} CPUs; provision from {provision_source()}", flush=True)
    try:
        for set_name in args.sets.split(","):
            started = time.perf_counter()
            images = make_images(args.images, small=set_name == "small")
            sizes = sorted(len(b) for b in images.values())
            print(f"{set_name}: {len(images)} JPEGs, {sum(sizes) / 1e6:.1f} MB (each {sizes[0] / 1e3:.0f}-"
                  f"{sizes[-1] / 1e3:.0f} KB, median {statistics.median(sizes) / 1e3:.0f} KB), made in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            for link in modes(args):
                summary[f"{link_name(link)}, {set_name}"] = bench_set(set_name, images, link, tmp, methods,
                                                                      args.rounds)
        print("\ntargets: large >= 5x faster than download + Pillow, <= 1.2x the floor, <= 5 % of the bytes; "
              "small <= max(5 %, 1 KiB per image) of the bytes")
        for title, rows in summary.items():
            verdicts(title, rows, title.rsplit(", ", 1)[1])
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(summary, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
