"""`provision links` against the enforcing sandbox: exact links files (filters, bucket order, key order, stdout vs
--out), bad input, and proof that lines are written while the listing is still going (streaming)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provision import sandbox
from provision.links import write_links
from provision.state import StateStore
from tests.conftest import Admin, Cli, listing_pages

KEYS = ["a/1.jpg", "a/2.PNG", "a/3.txt", "a/sub/4.jpeg", "b/5.jpg", "ü ñ/6 x.jpg", "top.png"]


@pytest.fixture
def buckets(cli: Cli, admin: Admin, prefix: str) -> list[str]:
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly").exit_code == 0
    names = [f"{prefix}-public", f"{prefix}-private"]
    for key in reversed(KEYS):  # put out of order: the file must come out in key order anyway
        admin.s3.put_object(Bucket=names[0], Key=key, Body=b"x")
    admin.s3.put_object(Bucket=names[1], Key="p/9.jpg", Body=b"x")
    return names


def test_links_exact_contents(cli: Cli, buckets: list[str], workdir: Path) -> None:
    public, private = buckets
    result = cli("links", "--env", "sandbox", "--bucket", public)
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(f"s3://{public}/{k}\n" for k in sorted(KEYS))

    result = cli("links", "--env", "sandbox", "--bucket", public, "--prefix", "a/", "--ext", ".jpg,.PNG")
    assert result.stdout == f"s3://{public}/a/1.jpg\ns3://{public}/a/2.PNG\n"
    result = cli("links", "--env", "sandbox", "--bucket", public, "--ext", "jpg", "--ext", ".jpeg")
    assert result.stdout == "".join(f"s3://{public}/{k}\n" for k in ("a/1.jpg", "a/sub/4.jpeg", "b/5.jpg",
                                                                        "ü ñ/6 x.jpg"))

    out = workdir / "links.txt"
    result = cli("links", "--env", "sandbox", "--ext", ".jpg", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text(encoding="utf-8") == (
        "".join(f"s3://{public}/{k}\n" for k in ("a/1.jpg", "b/5.jpg", "ü ñ/6 x.jpg")) + f"s3://{private}/p/9.jpg\n")
    assert f"4 links ({public}: 3, {private}: 1) written to {out}" in result.stderr
    assert "run `provision render-env --env sandbox --out DIR`" in result.stderr

    (workdir / "sv").mkdir()
    assert cli("render-env", "--env", "sandbox", "--out", str(workdir / "sv")).exit_code == 0
    result = cli("links", "--env", "sandbox", "--bucket", private, "--prefix", "p/")
    assert result.stdout == f"s3://{private}/p/9.jpg\n"
    assert "render-env" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--bucket", "not-ours"], "error: bucket 'not-ours' is not in the grant of environment 'sandbox'"),
    (["--ext", ".jpg,,.png"], "error: --ext '.jpg,,.png' holds an empty or invalid extension"),
    (["--out", "/nonexistent/dir/links.txt"], "error: --out /nonexistent/dir/links.txt: directory /nonexistent/dir"),
])
def test_links_bad_input(cli: Cli, buckets: list[str], args: list[str], message: str) -> None:
    result = cli("links", "--env", "sandbox", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert result.stdout == ""


def test_links_without_state(cli: Cli) -> None:
    result = cli("links", "--env", "sandbox")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nothing provisioned in environment 'sandbox' yet")


class ListingWatcher(io.StringIO):
    """A text sink that, at its first write, records how many LIST requests the sandbox has seen so far."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.lists_at_first_write: int | None = None

    def write(self, text: str) -> int:
        if self.lists_at_first_write is None:
            self.lists_at_first_write = count_lists(self.endpoint)
        return super().write(text)


def count_lists(endpoint: str) -> int:
    return sum(1 for e in sandbox.request_log(endpoint) if e["method"] == "GET" and e["service"] == "s3")


def test_links_are_streamed_while_listing(cli: Cli, admin: Admin, prefix: str) -> None:
    """60 keys are 2 pages of ListObjectsV2 under a 50-key page cap (the sandbox's ``/_sandbox/limits``; S3's
    1,000-key pages work alike): the first line is written after the first page, before the second is requested
    (nothing waits for the whole listing). Bounded memory at 100k keys: bench/links_memory.py."""
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly").exit_code == 0
    bucket = f"{prefix}-public"
    keys = [f"img/{i:05d}.jpg" for i in range(60)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: admin.s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    state = StateStore("sandbox").load().one(None, "the test")
    admin.reset_log()
    sink = ListingWatcher(admin.info.s3.endpoint_url)
    with listing_pages(admin.info.s3.endpoint_url, 50):
        report = write_links(state, sink, buckets=[bucket])
    assert sink.lists_at_first_write == 1
    assert count_lists(admin.info.s3.endpoint_url) == 2
    assert report.total == 60
    assert sink.getvalue() == "".join(f"s3://{bucket}/{k}\n" for k in keys)


def test_links_listing_refused_leaves_out_file_untouched(cli: Cli, admin: Admin, buckets: list[str],
                                                         workdir: Path) -> None:
    """The second bucket is gone: exit 3 with one line naming the operation, the bucket and S3's error code; the
    existing --out file keeps its old content and no temporary file is left next to it."""
    public, private = buckets
    admin.s3.delete_object(Bucket=private, Key="p/9.jpg")
    admin.s3.delete_bucket(Bucket=private)
    out = workdir / "links.txt"
    out.write_text("old\n")
    result = cli("links", "--env", "sandbox", "--out", str(out))
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: S3 ListObjectsV2 on bucket '{private}' failed: NoSuchBucket"), lines
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(".links")) == []

    result = cli("links", "--env", "sandbox", "--bucket", public, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(f"s3://{public}/a/1.jpg\n")
    assert out.stat().st_mode & 0o777 == 0o644


def test_atomic_open_streams_and_never_leaves_a_partial_file(tmp_path: Path) -> None:
    from provision.files import atomic_open, atomic_write

    target = tmp_path / "f.txt"
    atomic_write(target, b"one\n")
    assert target.read_bytes() == b"one\n" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(RuntimeError):
        with atomic_open(target, text=True) as fh:
            fh.write("half")
            assert list(tmp_path.glob(".f.txt.*.tmp"))  # the content goes to a temporary file...
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"one\n" and not list(tmp_path.glob(".f.txt.*"))  # ...removed on failure
    with atomic_open(target, 0o644, text=True) as fh:
        fh.write("ü line\n")
    assert target.read_bytes() == "ü line\n".encode() and target.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".f.txt.*"))
