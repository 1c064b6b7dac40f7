"""Manifest benchmark: ``provision manifest`` vs "download everything, then open each file with Pillow".

CVAT's guide makes ``manifest.jsonl`` with its ``utils/dataset_manifest/create.py``, which needs every image on local
disk: the bucket is downloaded first, then each file is opened with Pillow for its size (and EXIF orientation).
``provision manifest`` reads only the first few KiB of each image (ranged GETs of 2, then 16, then 64 KiB).

In a temp dir, with a fresh sandbox (``provision sandbox up``) and a read-only grant on one bucket
(``provision s3 <bucket> --env sandbox --readonly``):

1. makes ``--images`` JPEGs (default 500) of about 1-3 MB: crops of a random-noise canvas (so they really are that
   big; noise does not compress), 1300-2000 px wide, every 10th with an EXIF orientation of 6, 8 or 3; uploads them
   with the sandbox's admin key;
2. per round (``--rounds``, default 3; the order of the methods rotates):

   - ``provision manifest --env sandbox --bucket B --json`` as a subprocess with the grant's read-only key;
   - the guide's way (``download + Pillow``), as a subprocess of the same interpreter with the same read-only key
     and the same parallelism (8): ``list_objects_v2``, ``download_file`` of every object into a temp dir, then
     Pillow opens each file (width, height, EXIF orientation, CVAT's swap above 4): the target's baseline;
   - ``download + create.py``: the same plus what CVAT's ``create.py`` really does per image
     (``prepare_meta(..., use_image_hash=True)``: the MD5 of the decoded pixels), for reference.

   For each: wall seconds of the subprocess (start-up included), bytes read and GET requests. Bytes are counted by
   the client: ``provision manifest`` reports the bytes its `provision.objects.ObjectStore` reads returned
   (``stats.bytes_read``); the baseline sums the sizes of the files it downloaded. GET requests are counted at
   the sandbox's request log (every request that reached the server) for both, and the two manifests' sizes are
   compared image by image.

Prints the medians and the ratios against the target (``<= 5 % of the bytes and >= 5x faster``), measured against
``download + Pillow``. It only prints figures; it never asserts. Run from the repo root:
``.venv/bin/python bench/manifest.py [--images N] [--rounds N]``. ~2-3 minutes. The sandbox (moto) is one Python
process on the same machine: other load moves the figures.
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

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROVISION = str(BIN / "provision")
BUCKET = "bench-manifest-images"
PARALLEL = 8  # provision manifest's default --concurrency; the baseline downloads with as many threads
TARGET = "target: <= 5 % of the bytes and >= 5x faster"

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


def base_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROVISION_"))}
    env.update(AWS_CONFIG_FILE=str(state / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(state / "no-creds"),
               PROVISION_STATE_DIR=str(state), PROVISION_ENVS_DIR=str(REPO / "envs"))
    return env


def control(endpoint: str, path: str) -> Any:
    import urllib.request

    method = "GET" if path == "requests" else "POST"
    req = urllib.request.Request(f"{endpoint}/_sandbox/{path}", data=None if method == "GET" else b"{}",
                                 method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def make_images(n: int, seed: int = 7) -> dict[str, bytes]:
    """``n`` JPEGs of about 1-3 MB: crops of one random-noise canvas; every 10th has an EXIF orientation."""
    from PIL import Image

    rng = random.Random(seed)
    canvas = Image.frombytes("RGB", (2600, 2000), rng.randbytes(2600 * 2000 * 3))
    images: dict[str, bytes] = {}
    for i in range(n):
        width = rng.randint(1300, 2000)
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


def get_requests(endpoint: str) -> int:
    return sum(1 for e in control(endpoint, "requests") if e["method"] == "GET" and e["service"] == "s3")


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, dict[str, Any], str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout), proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="JPEGs of 1-3 MB")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each method (median reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-manifest-"))
    state = tmp / "state"
    state.mkdir()
    env = base_env(state)
    try:
        subprocess.run([PROVISION, "sandbox", "up"], env=env, cwd=tmp, check=True, capture_output=True)
        info = json.loads((state / "sandbox" / "endpoints.json").read_text())["s3"]
        endpoint = info["endpoint_url"]
        subprocess.run([PROVISION, "s3", BUCKET, "--env", "sandbox", "--readonly", "--json"], env=env, cwd=tmp,
                       check=True, capture_output=True)
        auth = json.loads((state / "sandbox.json").read_text())["grant"]["auth"]  # the read-only key, for the baseline
        key, secret = auth["access_key"], auth["secret_key"]

        started = time.perf_counter()
        images = make_images(args.images)
        total = sum(len(b) for b in images.values())
        sizes = sorted(len(b) for b in images.values())
        print(f"{len(images)} JPEGs, {total / 1e6:.0f} MB (each {sizes[0] / 1e6:.2f}-{sizes[-1] / 1e6:.2f} MB, "
              f"median {statistics.median(sizes) / 1e6:.2f} MB), made in {time.perf_counter() - started:.1f} s; "
              f"{os.cpu_count()} CPUs", flush=True)
        admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                             aws_access_key_id=info["access_key"], aws_secret_access_key=info["secret_key"],
                             config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: admin.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), images.items()))
        baseline_py = tmp / "baseline.py"
        baseline_py.write_text(BASELINE)

        results: dict[str, list[dict[str, Any]]] = {"provision manifest": [], "download + Pillow": [],
                                                     "download + create.py": []}
        for round_ in range(args.rounds):
            order = list(results)[round_ % 3:] + list(results)[:round_ % 3]  # rotated every round
            for name in order:
                work = tmp / f"round{round_}-method{list(results).index(name)}"
                work.mkdir()
                control(endpoint, "requests/reset")
                if name == "provision manifest":
                    seconds, doc, _ = timed([PROVISION, "manifest", "--env", "sandbox", "--bucket", BUCKET, "--json",
                                             "--out", str(work / "manifest.jsonl")], env, work)
                    lines = (work / "manifest.jsonl").read_text().splitlines()[2:]
                    got = {}
                    for line in lines:
                        entry = json.loads(line)
                        got[entry["name"] + entry["extension"]] = [entry["width"], entry["height"]]
                    row = {"seconds": seconds, "bytes": doc["stats"]["bytes_read"], "images": doc["stats"]["images"],
                           "sizes": got}
                else:
                    extra = ["hash"] if name == "download + create.py" else []
                    seconds, doc, _ = timed([sys.executable, str(baseline_py), endpoint, key, secret, BUCKET,
                                             str(work / "download"), str(PARALLEL), *extra], env, work)
                    row = {"seconds": seconds, "bytes": doc["bytes_read"], "images": doc["images"],
                           "sizes": doc["sizes"]}
                    shutil.rmtree(work / "download", ignore_errors=True)
                row["gets"] = get_requests(endpoint)
                results[name].append(row)
                print(f"round {round_ + 1}: {name}: {seconds:.2f} s, {row['bytes'] / 1e6:.1f} MB read, "
                      f"{row['gets']} GET requests", flush=True)

        def med(name: str, field: str) -> float:
            return statistics.median(r[field] for r in results[name])

        mine, guide = "provision manifest", "download + Pillow"
        agree = sum(1 for k, v in results[guide][0]["sizes"].items() if results[mine][0]["sizes"].get(k) == v)
        print()
        print(f"median of {args.rounds} round(s); MB = 10^6 bytes; bytes counted by each client (provision: its "
              f"ObjectStore's reads; baseline: the downloaded files); GET requests counted at the sandbox")
        head = f"{'method':<20} {'seconds':>8} {'MB read':>9} {'of total':>9} {'GET requests':>13} {'images':>7}"
        print(head)
        print("-" * len(head))
        for name in results:
            print(f"{name:<20} {med(name, 'seconds'):>8.2f} {med(name, 'bytes') / 1e6:>9.2f} "
                  f"{med(name, 'bytes') / total:>9.2%} {med(name, 'gets'):>13.0f} {med(name, 'images'):>7.0f}")
        share = med(mine, "bytes") / med(guide, "bytes")
        speed = med(guide, "seconds") / med(mine, "seconds")
        tool = med("download + create.py", "seconds") / med(mine, "seconds")
        print(f"same width/height for {agree} of {len(images)} images")
        print()
        print(f"{TARGET} (against {guide!r})")
        print(f"  bytes: provision reads {share:.2%} of the baseline's -> {'met' if share <= 0.05 else 'NOT met'}")
        print(f"  speed: provision is {speed:.1f}x faster -> {'met' if speed >= 5 else 'NOT met'}")
        print(f"  (against the guide's tool, create.py with its pixel checksums: {tool:.1f}x faster)")
    finally:
        subprocess.run([PROVISION, "sandbox", "down"], env=env, cwd=tmp, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
