"""`provision migrate` against the enforcing sandbox: a generated Supervisely storage tree goes into the buckets
byte for byte (multipart included), a re-run uploads nothing, a run that fails or is killed half-way resumes, the
local folders are never touched, and bad input is refused before any cloud call."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from provision import sandbox
from provision.objects import open_store
from provision.policies import policy_json, s3_policy
from provision.state import StateStore
from tests.conftest import Admin, Cli, read_grant
from tests.kills import settle

MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def make_tree(data_path: Path, prefix: str) -> dict[tuple[str, str], bytes]:
    """A Supervisely DATA_PATH with storage/<prefix>-public and -private: nested folders, empty files and an
    empty folder, names with spaces and non-ASCII characters, one 20 MB file (3 parts of 8 MiB) and one of exactly
    8 MiB (the threshold: multipart with 1 part). Returns {(bucket, key): content}."""
    rnd = hashlib.sha256(prefix.encode()).digest()
    blob = (rnd * (21 * MiB // len(rnd) + 1))  # cheap deterministic bytes; varied per file by slicing
    contents = {
        ("public", "videos/big clip.mp4"): os.urandom(20 * MiB),
        ("public", "images/2024/фото 1.jpg"): blob[1:50_000],
        ("public", "images/2024/naïve café.png"): blob[7:3_000],
        ("public", "images/empty.jpg"): b"",
        ("public", "deep/a/b/c/d/e/f.txt"): b"deep\n",
        ("public", "top level.json"): b'{"a": 1}\n',
        ("private", "emoji 😀 dir/x y.json"): b"{}\n",
        ("private", "threshold exactly 8MiB.bin"): os.urandom(8 * MiB),
        ("private", "workspace/1/annotations/ann 1.json"): blob[11:120_000],
        ("private", "empty"): b"",
        ("private", "日本語/ファイル.txt"): "こんにちは\n".encode(),
    }
    tree = {}
    for (kind, key), data in contents.items():
        bucket = f"{prefix}-{kind}"
        path = data_path / "storage" / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree[(bucket, key)] = data
    (data_path / "storage" / f"{prefix}-private" / "empty folder").mkdir()
    return tree


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root`` with its type, mode, size, mtime (ns) and content hash."""
    shot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            shot[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return shot


def remote(admin: Admin, bucket: str) -> dict[str, dict[str, Any]]:
    pages = admin.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o for page in pages for o in page.get("Contents", [])}


def migrate_json(cli: Cli, data_path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path), "--json", *extra)
    return result.exit_code, json.loads(result.stdout), result.stderr


def assert_identical(admin: Admin, tree: dict[tuple[str, str], bytes], buckets: list[str]) -> None:
    """Each bucket holds exactly the tree's keys, with the same bytes (downloaded and hashed)."""
    for bucket in buckets:
        want = {key: data for (b, key), data in tree.items() if b == bucket}
        assert set(remote(admin, bucket)) == set(want)
        for key, data in want.items():
            got = admin.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert md5(got) == md5(data), key


@pytest.fixture
def setup(cli: Cli, prefix: str, workdir: Path) -> tuple[Path, dict[tuple[str, str], bytes], list[str]]:
    """A read-only grant on <prefix>-public/-private and a matching storage tree."""
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly")
    assert result.exit_code == 0, result.output
    data_path = workdir / "supervisely-data"
    tree = make_tree(data_path, prefix)
    return data_path, tree, [f"{prefix}-public", f"{prefix}-private"]


def test_migrate_copies_tree_and_rerun_uploads_nothing(cli: Cli, admin: Admin, setup: Any) -> None:
    data_path, tree, buckets = setup
    before = snapshot(data_path)
    grant_before = read_grant()["grant"]

    code, doc, err = migrate_json(cli, data_path)
    assert (code, err) == (0, "")  # --json: one document on stdout, no progress bar
    total = sum(len(d) for d in tree.values())
    assert (doc["files"], doc["bytes"], doc["uploaded"], doc["uploaded_bytes"]) == (len(tree), total, len(tree), total)
    assert (doc["skipped"], doc["failed"], doc["failures"]) == (0, 0, [])
    assert [b["bucket"] for b in doc["buckets"]] == buckets
    assert_identical(admin, tree, buckets)
    objects = remote(admin, buckets[0])
    assert objects["videos/big clip.mp4"]["ETag"].strip('"').endswith("-3")  # multipart, 8 MiB parts
    assert objects["images/2024/фото 1.jpg"]["ETag"].strip('"') == md5(tree[(buckets[0], "images/2024/фото 1.jpg")])
    assert remote(admin, buckets[1])["threshold exactly 8MiB.bin"]["ETag"].strip('"').endswith("-1")
    assert admin.s3.head_object(Bucket=buckets[0], Key="images/2024/фото 1.jpg")["ContentType"] == "image/jpeg"

    cache = Path(os.environ["PROVISION_STATE_DIR"]) / "sandbox.migrate-cache.sqlite"
    assert cache.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(cache) as db:  # the upload responses' ETags, remembered per unchanged file
        assert db.execute("SELECT count(*) FROM checksums").fetchone()[0] == len(tree)
    for remembered in (False, True):  # hashing every file again, then the remembered checksums
        if not remembered:
            cache.unlink()
        admin.reset_log()
        code, doc, err = migrate_json(cli, data_path)
        assert code == 0, err
        assert (doc["uploaded"], doc["uploaded_bytes"], doc["to_upload"]) == (0, 0, 0)
        assert (doc["skipped"], doc["skipped_bytes"], doc["failed"]) == (len(tree), total, 0)
        log = admin.log()
        assert [e for e in log if e["mutating"] or e["method"] in ("PUT", "POST", "DELETE")] == []
        s3_requests = [(e["method"], e["path"]) for e in log if e["service"] == "s3"]
        assert sorted(s3_requests) == sorted(("GET", f"/{b}") for b in buckets)  # one LIST per bucket, no HEAD

    assert snapshot(data_path) == before  # the local folders are never modified
    assert read_grant()["grant"] == grant_before  # the read-only grant is untouched (admin key wrote)


def test_changed_files_are_reuploaded_and_dry_run_says_why(cli: Cli, admin: Admin, setup: Any) -> None:
    data_path, tree, buckets = setup
    admin.reset_log()
    code, doc, err = migrate_json(cli, data_path, "--dry-run")
    assert code == 0, err
    assert admin.mutating() == [] and remote(admin, buckets[0]) == {} and remote(admin, buckets[1]) == {}
    assert (doc["dry_run"], doc["to_upload"], doc["uploaded"], doc["skipped"]) == (True, len(tree), 0, 0)
    assert {(w["bucket"], w["key"]) for w in doc["would_upload"]} == set(tree)
    assert {w["reason"] for w in doc["would_upload"]} == {"new"}

    assert migrate_json(cli, data_path)[0] == 0
    storage = data_path / "storage"
    same_size = storage / buckets[0] / "top level.json"
    big = storage / buckets[0] / "videos/big clip.mp4"
    old_times = {p: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (same_size, big)}
    same_size.write_bytes(b'{"a": 2}\n')  # same size, other bytes: only the checksum tells
    with open(big, "r+b") as fh:  # one byte in the last part of a multipart object
        fh.seek(19 * MiB)
        byte = fh.read(1)[0]
        fh.seek(19 * MiB)
        fh.write(bytes([byte ^ 0xFF]))
    longer = storage / buckets[1] / "empty"
    longer.write_bytes(b"now with content")
    for path, times in old_times.items():  # same size and mtime as before: remembered checksums must not fool us
        os.utime(path, ns=times)

    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would upload" in result.stderr
    code, doc, _ = migrate_json(cli, data_path, "--dry-run")
    reasons = {(w["bucket"], w["key"]): w["reason"] for w in doc["would_upload"]}
    assert reasons == {(buckets[0], "top level.json"): "checksum differs",
                       (buckets[0], "videos/big clip.mp4"): "checksum differs",
                       (buckets[1], "empty"): "size differs"}
    assert doc["skipped"] == len(tree) - 3

    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert (doc["uploaded"], doc["skipped"]) == (3, len(tree) - 3)
    tree[(buckets[0], "top level.json")] = same_size.read_bytes()
    tree[(buckets[0], "videos/big clip.mp4")] = big.read_bytes()
    tree[(buckets[1], "empty")] = longer.read_bytes()
    assert_identical(admin, tree, buckets)


def test_injected_server_error_is_retried(cli: Cli, admin: Admin, setup: Any) -> None:
    data_path, tree, buckets = setup
    admin.reset_log()
    sandbox.control(admin.info.s3.endpoint_url, "faults", {"fail_mutating_at": 3})
    try:
        code, doc, err = migrate_json(cli, data_path, "--concurrency", "2")
    finally:
        sandbox.control(admin.info.s3.endpoint_url, "faults", {})
    assert code == 0, err
    assert [e["status"] for e in admin.mutating()].count(500) == 1  # the fault happened...
    assert (doc["uploaded"], doc["failed"]) == (len(tree), 0)  # ...and botocore's retry absorbed it
    assert_identical(admin, tree, buckets)


def test_persistent_fault_fails_one_file_then_rerun_resumes(cli: Cli, admin: Admin, setup: Any) -> None:
    """One request at a time; the 6th mutating request and all its retries get HTTP 500, so exactly one file fails
    half-way through the run: exit 4, the file listed. The re-run uploads that file only."""
    data_path, tree, buckets = setup
    store = open_store(StateStore("sandbox").load().one(None, "the test"), buckets[0], write=True)
    attempts = store.client.meta.config.retries["total_max_attempts"]  # botocore's max_attempts=3: 1 + 3 retries
    admin.reset_log()
    sandbox.control(admin.info.s3.endpoint_url, "faults", {"fail_mutating_at": 6, "count": attempts})
    try:
        code, doc, err = migrate_json(cli, data_path, "--concurrency", "1")
    finally:
        sandbox.control(admin.info.s3.endpoint_url, "faults", {})
    assert code == 4, err
    assert [e["status"] for e in admin.mutating()].count(500) == attempts
    assert (doc["uploaded"], doc["failed"]) == (len(tree) - 1, 1)
    (failure,) = doc["failures"]
    assert "InternalError" in failure["error"] or "500" in failure["error"], failure
    assert f"error: 1 of {len(tree)} files were not uploaded: {failure['bucket']}/{failure['key']}" in err

    admin.reset_log()
    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert (doc["uploaded"], doc["skipped"], doc["failed"]) == (1, len(tree) - 1, 0)
    assert doc["uploaded_bytes"] == len(tree[(failure["bucket"], failure["key"])])
    assert_identical(admin, tree, buckets)


def test_failed_uploads_are_listed_exit_4_then_a_rerun_finishes(cli: Cli, admin: Admin, prefix: str,
                                                                 workdir: Path) -> None:
    """A --full grant writes with its own key; with its policy drifted to read-only on the private bucket, the
    public bucket is uploaded and every private file fails (AccessDenied, not retried): exit 4 with the failures
    listed. Restoring the policy (`provision s3` re-run) and re-running migrate uploads only what is missing."""
    result = cli("s3", "--env", "sandbox", "--prefix", prefix, "--full")
    assert result.exit_code == 0, result.output
    data_path = workdir / "data"
    tree = make_tree(data_path, prefix)
    public, private = f"{prefix}-public", f"{prefix}-private"
    user = next(r["name"] for r in read_grant()["resources"] if r["kind"] == "iam_user")
    drifted = s3_policy([public], "full")
    for i, statement in enumerate(s3_policy([private], "readonly")["Statement"]):
        drifted["Statement"].append(dict(statement, Sid=f"ReadOnly{i}"))
    admin.iam.put_user_policy(UserName=user, PolicyName=f"provision-sandbox-{prefix}",
                              PolicyDocument=policy_json(drifted))

    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path))
    assert result.exit_code == 4, result.output
    assert result.stdout == ""
    assert "uploading" in result.stderr and "ETA" in result.stderr and "/s" in result.stderr  # the progress bar
    n_private = sum(1 for b, _ in tree if b == private)
    n_public = len(tree) - n_private
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert f"error: {n_private} of {len(tree)} files were not uploaded: {private}/" in error_lines[0]
    assert "AccessDenied" in error_lines[0] and "re-run `provision migrate" in error_lines[0]
    assert result.stderr.count("failed ") >= n_private  # each failed file listed
    assert set(remote(admin, public)) == {k for b, k in tree if b == public}
    assert remote(admin, private) == {}

    code, doc, err = migrate_json(cli, data_path)
    assert code == 4
    assert {(f["bucket"], f["key"]) for f in doc["failures"]} == {(b, k) for b, k in tree if b == private}
    assert (doc["skipped"], doc["uploaded"], doc["failed"]) == (n_public, 0, n_private)

    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--full").exit_code == 0  # restores the policy
    admin.reset_log()
    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert (doc["skipped"], doc["uploaded"], doc["failed"]) == (n_public, n_private, 0)
    assert not [e for e in admin.mutating() if e["path"].startswith(f"/{public}/")]
    assert_identical(admin, tree, [public, private])


def test_killed_run_resumes(admin: Admin, cli: Cli, prefix: str, workdir: Path) -> None:
    """SIGKILL a real `provision migrate` process half-way; the re-run uploads only what is missing."""
    assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly").exit_code == 0
    data_path = workdir / "data"
    tree = {}
    for kind in ("public", "private"):
        (data_path / "storage" / f"{prefix}-{kind}").mkdir(parents=True)
    for i in range(240):
        bucket = f"{prefix}-{'public' if i % 2 else 'private'}"
        key = f"dir {i % 7}/file {i:03d}.bin"
        data = os.urandom(4_000 + i)
        path = data_path / "storage" / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree[(bucket, key)] = data
    before = snapshot(data_path)

    admin.reset_log()
    proc = subprocess.Popen([sys.executable, "-m", "provision", "migrate", "--env", "sandbox", "--data-path",
                             str(data_path), "--concurrency", "1", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while sum(1 for e in admin.log() if e["method"] == "PUT" and e.get("status") == 200) < 30:
        assert proc.poll() is None and time.monotonic() < deadline, "migrate ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    settle(admin)  # the upload in flight when it was killed may still land: count it
    done = {(b, k) for b in (f"{prefix}-public", f"{prefix}-private") for k in remote(admin, b)}
    assert 30 <= len(done) < len(tree)

    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert doc["skipped"] == len(done) and doc["uploaded"] == len(tree) - len(done)
    assert_identical(admin, tree, [f"{prefix}-public", f"{prefix}-private"])
    assert snapshot(data_path) == before


@pytest.mark.parametrize("case", ["no dir", "no storage", "other prefix", "one missing", "no state"])
def test_refuses_bad_folders_with_one_line(cli: Cli, admin: Admin, prefix: str, workdir: Path, case: str) -> None:
    if case != "no state":
        assert cli("s3", "--env", "sandbox", "--prefix", prefix, "--readonly").exit_code == 0
    data_path = workdir / "data"
    storage = data_path / "storage"
    expected = {
        "no dir": f"--data-path {data_path} is not a directory",
        "no storage": f"{storage} does not exist",
        "other prefix": f"the buckets of environment 'sandbox' ({prefix}-public, {prefix}-private) do not match "
                        f"the folders in {storage} (acme-private, acme-public)",
        "one missing": f"missing folder(s) {storage / (prefix + '-private')} for bucket(s) {prefix}-private",
        "no state": "nothing provisioned in environment 'sandbox' yet",
    }[case]
    if case == "no storage":
        data_path.mkdir()
    elif case == "other prefix":
        (storage / "acme-public").mkdir(parents=True)
        (storage / "acme-private").mkdir()
        (storage / "acme-public" / "a.jpg").write_bytes(b"x")
    elif case in ("one missing", "no state"):
        (storage / f"{prefix}-public").mkdir(parents=True)
    admin.reset_log()
    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), lines
    assert admin.log() == []  # refused before any request


# ---- shared client, cache path, upload order, errors ------------------------------------------------------------
def test_cache_path_is_the_default_cache(admin: Admin, setup: Any, workdir: Path) -> None:
    """`migrate.cache_path(env)` names the file `migrate()` uses when no cache is given (the one `destroy` must
    remove); a dry run reads it but never creates it."""
    from provision.errors import BadInput
    from provision.migrate import migrate
    from provision.migrate_cache import cache_path

    data_path, tree, _ = setup
    path = cache_path("sandbox")
    assert path == workdir / ".provision" / "sandbox.migrate-cache.sqlite"
    with pytest.raises(BadInput):
        cache_path("../etc")
    state = StateStore("sandbox").load().one(None, "the test")
    report = migrate(state, data_path, dry_run=True)
    assert report.total("to_upload") == len(tree) and not path.exists()
    report = migrate(state, data_path)
    assert report.total("uploaded") == len(tree)
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM checksums").fetchone()[0]
    assert rows == len(tree)  # every upload's ETag remembered
    report = migrate(state, data_path)
    assert (report.total("uploaded"), report.total("skipped")) == (0, len(tree))


def test_buckets_share_one_client_that_parses_no_timestamps(admin: Admin, setup: Any) -> None:
    """`open_stores` builds one provider and the stores share its S3 client; that data client keeps S3's
    timestamps as text, while clients the provider makes afterwards still parse them (the swap is undone)."""
    from provision.objects import open_stores
    from provision.profiles import Profile
    from provision.providers.base import load_provider

    _, _, buckets = setup
    state = StateStore("sandbox").load().one(None, "the test")
    stores = open_stores(state, buckets, write=True)
    assert [s.bucket for s in stores] == buckets
    assert stores[0].client is stores[1].client
    stores[0].put_bytes("t.txt", b"x")
    item = stores[0].client.list_objects_v2(Bucket=buckets[0])["Contents"][0]
    assert isinstance(item["LastModified"], str) and item["LastModified"].startswith("20")
    assert [o.key for o in stores[0].list()] == ["t.txt"]

    provider = load_provider(Profile.model_validate(state.inputs))
    provider.objects(state, buckets[0], True)
    later = provider.client("s3").list_objects_v2(Bucket=buckets[0])["Contents"][0]
    assert not isinstance(later["LastModified"], str)  # a datetime: other clients are untouched


def test_large_files_go_first_and_small_puts_skip_expect_continue(cli: Cli, admin: Admin, setup: Any) -> None:
    """With one request at a time, the multipart uploads of the two large files come before every small PutObject,
    and the small PutObjects are sent without ``Expect: 100-continue`` (seen in the SDK's own before-send event)."""
    from provision.providers.aws.objects import S3Transfer
    from provision.transfer import UploadJob

    data_path, tree, buckets = setup
    admin.reset_log()
    code, doc, err = migrate_json(cli, data_path, "--concurrency", "1")
    assert code == 0, err
    puts = [e for e in admin.mutating() if e["method"] in ("PUT", "POST")]
    large = {f"/{buckets[0]}/videos/big clip.mp4", f"/{buckets[1]}/threshold exactly 8MiB.bin"}
    paths = [unquote(e["path"]) for e in puts]
    for bucket in buckets:  # bucket after bucket; in each, the large file's requests come first
        mine = [p for p in paths if p.startswith(f"/{bucket}/")]
        first_small = next(i for i, p in enumerate(mine) if p not in large)
        assert set(mine[:first_small]) & large and not set(mine[first_small:]) & large, mine

    store = open_store(StateStore("sandbox").load().one(None, "the test"), buckets[1], write=True)
    seen: list[tuple[str, str | None]] = []

    def record(request: Any, **kwargs: Any) -> None:
        seen.append((kwargs["event_name"].rsplit(".", 1)[-1], request.headers.get("Expect")))

    store.client.meta.events.register("before-send.s3", record)
    try:
        small = data_path / "small.bin"
        small.write_bytes(b"s" * 1000)
        transfer = store.transfer(2)
        assert isinstance(transfer, S3Transfer) and transfer.concurrency == 2
        done: list[Any] = []
        transfer.upload([UploadJob("x/small.bin", small, 1000)], lambda n: None, lambda *a: done.append(a))
        assert [(job.key, error) for job, error, _ in done] == [("x/small.bin", None)]
        store.put_bytes("x/direct.txt", b"d")  # outside a transfer, the SDK's default (Expect) is back
    finally:
        store.client.meta.events.unregister("before-send.s3", record)
    assert seen == [("PutObject", None), ("PutObject", b"100-continue")], seen


def test_listing_refused_is_one_line_exit_3(cli: Cli, admin: Admin, setup: Any) -> None:
    """A bucket that disappeared: the listing is refused before any upload; one line naming the operation, the
    bucket and S3's error code; exit 3; nothing uploaded."""
    data_path, tree, buckets = setup
    admin.s3.delete_bucket(Bucket=buckets[1])
    admin.reset_log()
    result = cli("migrate", "--env", "sandbox", "--data-path", str(data_path))
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: S3 ListObjectsV2 on bucket '{buckets[1]}' failed: NoSuchBucket"), lines
    assert admin.mutating() == []
    assert "Traceback" not in result.output


def test_transfer_for_uses_the_stores_own_transfer() -> None:
    """Provider-neutral: `transfer_for` asks the store; a store without ``transfer`` is refused as bad input,
    naming its scheme (no provider is assumed)."""
    from provision.errors import BadInput
    from provision.transfer import transfer_for

    class Plain:
        url_scheme = "azure"
        bucket = "c"

    class WithTransfer(Plain):
        def transfer(self, concurrency: int) -> Any:
            return ("own", concurrency)

    assert transfer_for(WithTransfer(), 7) == ("own", 7)
    with pytest.raises(BadInput, match=r"migrating into azure:// storage is not supported"):
        transfer_for(Plain(), 7)


def test_the_cli_default_concurrency_is_the_module_default() -> None:
    """The CLI states the default literally (importing provision.migrate would slow `--help`): keep them equal."""
    import inspect

    from provision.cli.data import migrate_command
    from provision.migrate import DEFAULT_CONCURRENCY

    assert inspect.signature(migrate_command).parameters["concurrency"].default.default == DEFAULT_CONCURRENCY
