"""The data commands behave alike on every provider's emulator (the harnesses of test_contract.py): `migrate` copies
a generated Supervisely storage tree (nested folders, empty files, spaces and non-ASCII names, files above the
multipart/block threshold) byte for byte, a re-run uploads 0 bytes, a run with a failing upload exits 4 and a
re-run finishes it; `links` writes exactly the provider's URLs in key order."""

from __future__ import annotations

from pathlib import Path

from provision import sandbox
from tests.conftest import Cli
from tests.harnesses import Harness, run
from tests.test_migrate import make_tree, migrate_json, snapshot

SCHEMES = {"s3": "s3", "azure": "azure", "gcs": "google"}


def assert_identical(harness: Harness, tree: dict[tuple[str, str], bytes]) -> None:
    for (bucket, key), data in tree.items():
        assert harness.read(bucket, key) == data, (bucket, key)


def test_migrate_tree_rerun_and_failed_upload(cli: Cli, harness: Harness, prefix: str, workdir: Path) -> None:
    run(cli, *harness.args(prefix))
    data_path = workdir / "data"
    tree = make_tree(data_path, prefix)
    before = snapshot(data_path)
    total = sum(len(d) for d in tree.values())

    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert (doc["uploaded"], doc["uploaded_bytes"], doc["failed"]) == (len(tree), total, 0)
    assert_identical(harness, tree)

    harness.reset_log()
    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert (doc["uploaded"], doc["uploaded_bytes"], doc["skipped"]) == (0, 0, len(tree))
    assert harness.mutating() == []

    # a lasting failure of one upload: exit 4, that file listed; the re-run uploads it and nothing else
    victim = (f"{prefix}-public", "top level.json")
    (data_path / "storage" / victim[0] / victim[1]).write_bytes(b'{"a": 2}\n')
    tree[victim] = b'{"a": 2}\n'
    sandbox.control(harness.log_url, "faults", {"fail_mutating_at": 1, "count": 1000, "status": 400})
    try:
        code, doc, err = migrate_json(cli, data_path)
    finally:
        sandbox.control(harness.log_url, "faults", {})
    assert code == 4, err
    assert [(f["bucket"], f["key"]) for f in doc["failures"]] == [victim]
    code, doc, err = migrate_json(cli, data_path)
    assert code == 0, err
    assert (doc["uploaded"], doc["skipped"]) == (1, len(tree) - 1)
    assert_identical(harness, tree)
    assert snapshot(data_path) != before and all(
        (data_path / "storage" / b / k).read_bytes() == d for (b, k), d in tree.items())


def test_links_file_is_exact(cli: Cli, harness: Harness, prefix: str, workdir: Path) -> None:
    run(cli, *harness.args(prefix))
    bucket = f"{prefix}-public"
    keys = ["b/2.png", "a/1.jpg", "a/10.jpg", "c d/ü.jpg", "notes.txt", "a/9.JPG"]
    for key in keys:
        harness.put(bucket, key, b"x")
    out = workdir / "x.links"
    run(cli, "links", "--env", "sandbox", "--bucket", bucket, "--ext", ".jpg,.png", "--out", str(out))
    scheme = SCHEMES[harness.name]
    expected = [f"{scheme}://{bucket}/{k}" for k in sorted(k for k in keys if not k.endswith(".txt"))]
    assert out.read_text(encoding="utf-8").splitlines() == expected
