"""Seed an "existing dataset" bucket on the running sandbox for the demo: create it with the sandbox's admin
credential (as the dataset's owner would have) and put a few real JPEG images in it.

Usage: ``python scripts/seed_dataset.py BUCKET [--images N]``. Prints one line per image. Needs a running
``provision sandbox`` (found the way provision finds it) and Pillow.
"""

from __future__ import annotations

import argparse
import io
import sys


def main(argv: list[str] | None = None) -> int:
    """Create ``BUCKET`` if missing and upload ``N`` generated JPEGs (``images/img_<i>.jpg``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bucket")
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args(argv)

    import boto3
    from PIL import Image

    from provision.sandbox import require_info

    info = require_info()
    s3 = boto3.client("s3", endpoint_url=info.s3.endpoint_url, region_name=info.s3.region,
                      aws_access_key_id=info.s3.access_key, aws_secret_access_key=info.s3.secret_key)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if args.bucket not in existing:
        s3.create_bucket(Bucket=args.bucket)
    for i in range(args.images):
        buffer = io.BytesIO()
        Image.new("RGB", (640 + 64 * i, 480), (40 * i % 256, 120, 200)).save(buffer, "JPEG", quality=85)
        key = f"images/img_{i}.jpg"
        s3.put_object(Bucket=args.bucket, Key=key, Body=buffer.getvalue(), ContentType="image/jpeg")
        print(f"put s3://{args.bucket}/{key} ({len(buffer.getvalue()):,} bytes, {640 + 64 * i}x480)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
