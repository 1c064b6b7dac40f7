"""render-env loses nothing: byte-exact round trips of hand-written files (a commented Compose override with anchors,
``x-`` fields and ``!reset``; a commented ``remote_links.yml``; a CRLF ``.env`` with ``export`` lines and inline
comments), all-or-nothing writes (a failure on the 3rd file leaves the first two untouched), distinct backups,
symlinks, owner and mode kept, and one-line refusals (FIFO, non-UTF-8, duplicate keys, alias bomb, wrong shape)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from provision import files as files_module
from provision.errors import BadInput, PartialFailure
from provision.models import Access, KeyPair, Role
from provision.render import render_target, write
from provision.state import StateStore
from tests.conftest import REPO, Cli
from tests.test_render import KEY, MODES, compose_binary, grant, pair_state, render_pair

OVERRIDE = (
    "# Supervisely override (hand-written)\n"
    "x-logging: &logging\n"
    "  driver: json-file   # rotate\n"
    "  options:\n"
    '    max-size: "10m"\n'
    "\n"
    "services:\n"
    "  proxy:\n"
    "    logging: *logging\n"
    "    ports: !reset []\n"
    "    environment:\n"
    "      CACHE_PREVIEWS_SIZE: '2g'  # bigger\n"
    "  http-storage:\n"
    "    logging: *logging\n"
    "    volumes:\n"
    "      # extra data\n"
    "      - /data/extra:/extra:ro   # mine\n"
    "      - '/old/links.yml:/remote_links.yml:ro'\n"
    "    # end of http-storage\n"
    "  db: !reset null\n"
)
LINKS = (
    "# connections for Supervisely\n"
    "team-a:   # the team's own MinIO\n"
    "  provider: minio\n"
    '  endpoint: "minio.internal:9000"\n'
    "  buckets: [x, 'y']\n"
)
ENV_CRLF = (
    "# Supervisely\r\n"
    "export SERVER_ADDRESS=https://sv.example.com   # public URL\r\n"
    "STORAGE_PROVIDER=http # was local\r\n"
    "export STORAGE_ACCESS_KEY='old key'  # rotated monthly\r\n"
    "\r\n"
    'export STORAGE_SECRET_KEY="old"\r\n'
    "STORAGE_IAM_ROLE=old-role   # not used with a key\r\n"
    "LICENSE_KEY=abc # license\r\n"
)
BASE_COMPOSE = {"services": {
    "proxy": {"image": "supervisely/proxy", "ports": ["80:80"]},
    "http-storage": {"image": "supervisely/http-storage", "environment": {
        k: f"${{{k}}}" for k in ("STORAGE_PROVIDER", "STORAGE_ACCESS_KEY", "STORAGE_SECRET_KEY", "SERVER_ADDRESS",
                                 "LICENSE_KEY", "STORAGE_PORT")}},
    "db": {"image": "postgres"},
}}


def lost_bytes(original: str, result: str, managed: list[str]) -> int:
    """Bytes of ``original``'s lines missing from ``result``, not counting the ``managed`` lines we replace."""
    kept = result.splitlines(keepends=True)
    return sum(len(line) for line in original.splitlines(keepends=True) if line not in kept and line not in managed)


def compose_config(out: Path, home: Path) -> dict:
    run = subprocess.run([compose_binary(), "config", "--format", "json"], cwd=out, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(home)}, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_override_and_links_round_trip_byte_exact(tmp_path: Path) -> None:
    out = tmp_path / "sv"
    out.mkdir()
    (out / "docker-compose.yml").write_text(yaml.safe_dump(BASE_COMPOSE))
    (out / "docker-compose.override.yml").write_text(OVERRIDE)
    (out / "remote_links.yml").write_text(LINKS)
    files = render_pair(MODES["key_pair"], out, "provision-prod", proxy_env={"CACHE_STORAGE_SIZE": "50g"})
    write(files)
    ours = (f"      - type: bind\n        source: {out}/remote_links.yml\n        target: /remote_links.yml\n"
            "        read_only: true\n")
    expected = OVERRIDE.replace("      CACHE_PREVIEWS_SIZE: '2g'  # bigger\n",
                                "      CACHE_PREVIEWS_SIZE: '2g'  # bigger\n      CACHE_STORAGE_SIZE: 50g\n"
                                ).replace("      - '/old/links.yml:/remote_links.yml:ro'\n", ours)
    got = (out / "docker-compose.override.yml").read_text()
    assert got == expected
    assert lost_bytes(OVERRIDE, got, ["      - '/old/links.yml:/remote_links.yml:ro'\n"]) == 0
    links = (out / "remote_links.yml").read_text()
    assert links == LINKS + (
        "provision-prod:\n  provider: minio\n  endpoint: s3.amazonaws.com\n  access_key: AKIAEXAMPLEEXAMPLE12\n"
        f"  secret_key: {KEY.secret_key}\n  region: eu-central-1\n  buckets:\n  - acme-public\n  - acme-private\n")
    # the real Compose accepts the merged override (!reset, anchors) and sees our mount and the kept settings
    config = compose_config(out, tmp_path)
    storage = config["services"]["http-storage"]
    assert {v["target"] for v in storage["volumes"]} == {"/extra", "/remote_links.yml"}
    assert config["services"]["proxy"].get("ports") in (None, [])
    assert config["services"]["proxy"]["environment"]["CACHE_PREVIEWS_SIZE"] == "2g"
    assert config["services"]["proxy"]["environment"]["CACHE_STORAGE_SIZE"] == "50g"
    assert storage["logging"]["driver"] == "json-file"
    # a re-render with a new secret changes exactly one line of remote_links.yml, and nothing of the override
    rotated = grant(KeyPair(access_key=KEY.access_key, secret_key="n3w-secret"))
    files = render_pair(rotated, out, "provision-prod", proxy_env={"CACHE_STORAGE_SIZE": "50g"})
    assert [f.action for f in files] == ["update", "update", "no change"]
    write(files)
    assert (out / "remote_links.yml").read_text() == links.replace(KEY.secret_key, "n3w-secret")
    assert (out / "docker-compose.override.yml").read_text() == expected


def test_crlf_env_keeps_export_comments_and_endings(tmp_path: Path) -> None:
    out = tmp_path / "sv"
    out.mkdir()
    (out / "docker-compose.yml").write_text(yaml.safe_dump(BASE_COMPOSE))
    (out / ".env").write_bytes(ENV_CRLF.encode())
    write(render_pair(MODES["key_pair"], out, "c"))
    expected = (
        "# Supervisely\r\n"
        "export SERVER_ADDRESS=https://sv.example.com   # public URL\r\n"
        "STORAGE_PROVIDER=minio # was local\r\n"
        "export STORAGE_ACCESS_KEY=AKIAEXAMPLEEXAMPLE12  # rotated monthly\r\n"
        "\r\n"
        f"export STORAGE_SECRET_KEY={KEY.secret_key}\r\n"
        "LICENSE_KEY=abc # license\r\n"
        "\r\n"
        "# Storage: managed by provision (these keys are rewritten by `provision render-env`; the rest of the file "
        "is yours)\r\n"
        "STORAGE_ENDPOINT=s3.amazonaws.com\r\n"
        "STORAGE_PORT=443\r\n"
        "JUPYTER_DOWNLOAD_FILES_BEFORE_START=true\r\n"
        "STORAGE_JUPYTER_SYNC=true\r\n"
    )
    got = (out / ".env").read_bytes()
    assert got == expected.encode()
    assert got.count(b"\n") == got.count(b"\r\n")  # no mixed endings
    managed = [line for line in ENV_CRLF.splitlines(keepends=True) if "STORAGE_" in line]
    assert lost_bytes(ENV_CRLF, got.decode(), managed) == 0
    environment = compose_config(out, tmp_path)["services"]["http-storage"]["environment"]
    assert environment["STORAGE_PROVIDER"] == "minio"
    assert environment["STORAGE_ACCESS_KEY"] == KEY.access_key
    assert environment["STORAGE_SECRET_KEY"] == KEY.secret_key
    assert environment["SERVER_ADDRESS"] == "https://sv.example.com"
    assert environment["LICENSE_KEY"] == "abc"
    assert environment["STORAGE_PORT"] == "443"


def test_back_to_back_renders_keep_distinct_backups(tmp_path: Path) -> None:
    contents = []
    for i in range(4):
        write(render_pair(grant(KeyPair(access_key="AKIA", secret_key=f"secret-{i}")), tmp_path, "c"))
        contents.append((tmp_path / ".env").read_bytes())
    backups = sorted(tmp_path.glob(".env.provision-backup-*"))
    assert len(backups) == 3
    assert sorted(b.read_bytes() for b in backups) == sorted(contents[:3])
    assert all(stat.S_IMODE(os.stat(b).st_mode) == 0o600 for b in backups)


def test_symlinked_env_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "config" / "supervisely.env"
    real.parent.mkdir()
    real.write_text("LICENSE_KEY=abc\n")
    out = tmp_path / "sv"
    out.mkdir()
    (out / ".env").symlink_to(real)
    write(render_pair(MODES["key_pair"], out, "c"))
    assert (out / ".env").is_symlink() and os.readlink(out / ".env") == str(real)
    text = real.read_text()
    assert text.startswith("LICENSE_KEY=abc\n") and f"STORAGE_SECRET_KEY={KEY.secret_key}\n" in text
    assert not [p for p in real.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_existing_file_keeps_owner_and_mode(tmp_path: Path) -> None:
    env, override = tmp_path / ".env", tmp_path / "docker-compose.override.yml"
    env.write_text("LICENSE_KEY=abc\n")
    override.write_text("services: {}\n")
    for path in (env, override):
        os.chmod(path, 0o644)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        owner = (4321, 4321)
        for path in (env, override):
            os.chown(path, *owner)
    write(render_pair(MODES["key_pair"], tmp_path, "c"))
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o600  # it holds the secret key: no looser than 0600
    assert stat.S_IMODE(os.stat(override).st_mode) == 0o644  # no secret: the user's mode stays
    assert stat.S_IMODE(os.stat(tmp_path / "remote_links.yml").st_mode) == 0o600  # new: 0600
    for path in (env, override):
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == owner
    # a role grant holds no secret: an existing .env keeps its 0644
    os.chmod(env, 0o644)
    write(render_pair(MODES["role"], tmp_path, "c"))
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o644


def _state(env: str = "prod") -> None:
    """An environment whose render-env writes all three files: a full key as the storage, a read-only one as a
    Links connection."""
    StateStore(env).save(pair_state(env, MODES["key_pair"]))


def test_fifo_env_is_refused_quickly(workdir: Path) -> None:
    _state()
    out = workdir / "sv"
    out.mkdir()
    os.mkfifo(out / ".env")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "provision", "render-env", "--env", "prod", "--out", str(out)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 2, run.stderr
    assert time.monotonic() - started < 30
    assert len(run.stderr.strip().splitlines()) == 1 and "FIFO" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == [".env"]


@pytest.mark.parametrize("name", [".env", "remote_links.yml", "docker-compose.override.yml"])
def test_directory_at_a_destination_is_refused_before_writing(name: str, tmp_path: Path) -> None:
    out = tmp_path / "sv"
    (out / name).mkdir(parents=True)
    with pytest.raises(BadInput, match="directory"):
        render_pair(MODES["key_pair"], out, "c")
    assert sorted(p.name for p in out.iterdir()) == [name]


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("docker-compose.override.yml", BOMB.encode(), "alias bomb"),
    ("remote_links.yml", BOMB.encode(), "alias bomb"),
    ("docker-compose.override.yml", b"services:\n  proxy: {}\n  proxy: {}\n", "duplicate key"),
    ("remote_links.yml", b"c:\n  provider: minio\nc: {}\n", "duplicate key"),
    ("docker-compose.override.yml", b"services:\n  proxy:\n    image: caf\xe9\n", "not UTF-8"),
    ("remote_links.yml", b"\xff\xfe\x00", "not UTF-8"),
    ("docker-compose.override.yml", b"services:\n- proxy\n- http-storage\n", "services is a list"),
    ("docker-compose.override.yml", b"services:\n  http-storage:\n    volumes: /x:/y\n",
     "services.http-storage.volumes is a string"),
    ("docker-compose.override.yml", b"services:\n  http-storage: [a]\n", "services.http-storage is a list"),
    ("remote_links.yml", b"- a\n- b\n", "not a YAML mapping"),
    ("remote_links.yml", b"c: [unclosed\n", "not valid YAML"),
    ("remote_links.yml", b"a: &a [*a]\n", "recursive alias"),
    ("docker-compose.override.yml", b"x" * (1024 * 1024 + 1), "larger than"),
])
def test_bad_yaml_is_refused_in_one_line_and_nothing_written(name: str, content: bytes, message: str, cli: Cli,
                                                             workdir: Path) -> None:
    _state()
    out = workdir / "sv"
    out.mkdir()
    (out / ".env").write_text("LICENSE_KEY=abc\n")
    (out / name).write_bytes(content)
    started = time.monotonic()
    result = cli("render-env", "--env", "prod", "--out", str(out))
    assert time.monotonic() - started < 30
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and name in result.stderr
    assert "Traceback" not in result.output
    assert (out / ".env").read_text() == "LICENSE_KEY=abc\n"
    assert sorted(p.name for p in out.iterdir()) == sorted({".env", name})


def test_reset_volumes_of_http_storage_become_override_with_ours(tmp_path: Path) -> None:
    original = "services:\n  http-storage:\n    volumes: !reset []   # drop the base mounts\n"
    (tmp_path / "docker-compose.override.yml").write_text(original)
    write(render_pair(MODES["role"], tmp_path, "c"))
    got = (tmp_path / "docker-compose.override.yml").read_text()
    assert "!override" in got and "!reset" not in got
    volumes = yaml.load(got.replace("!override", ""), Loader=yaml.SafeLoader)["services"]["http-storage"]["volumes"]
    assert [v["target"] for v in volumes] == ["/remote_links.yml"]


def _originals(out: Path) -> dict[str, bytes]:
    out.mkdir()
    (out / ".env").write_bytes(b"LICENSE_KEY=abc\n")
    (out / "remote_links.yml").write_bytes(LINKS.encode())
    (out / "docker-compose.override.yml").write_bytes(OVERRIDE.encode())
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_rename_failing_on_the_third_file_restores_the_first_two(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sv"
    before = _originals(out)
    files = render_pair(MODES["key_pair"], out, "c")
    assert [f.action for f in files] == ["update"] * 3
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):  # noqa: ANN001, ANN202
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(files_module.os, "replace", failing_replace)
    with pytest.raises(PartialFailure) as raised:
        write(files)
    assert raised.value.exit_code == 4 and "restored" in str(raised.value)
    monkeypatch.setattr(files_module.os, "replace", real_replace)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no backup, no temporary file left


def test_staging_failing_on_the_third_file_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sv"
    before = _originals(out)
    files = render_pair(MODES["key_pair"], out, "c")
    real_mkstemp, calls = files_module.tempfile.mkstemp, []

    def failing_mkstemp(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs.get("prefix"))
        if len(calls) == 3:
            raise OSError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(files_module.tempfile, "mkstemp", failing_mkstemp)
    with pytest.raises(BadInput, match="docker-compose.override.yml"):
        write(files)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_render_target_table_covers_every_target(tmp_path: Path) -> None:
    from provision.render import TARGETS

    assert sorted(TARGETS) == ["cvat", "onepanel", "supervisely"]
    state = pair_state("prod", MODES["key_pair"])
    [onepanel] = render_target("onepanel", state, tmp_path, {"namespace": "demo", "grant": "storage"})
    assert onepanel.path.name == "onepanel.env" and not onepanel.secret
    # the full grant "storage" as Supervisely's instance storage (.env), the read-only one as a Links connection
    assert state.grants["storage"].grant.access == Access.full
    assert [f.path.name for f in render_target("supervisely", state, tmp_path, {"storage": "storage"})] == [
        ".env", "remote_links.yml", "docker-compose.override.yml"]
    with pytest.raises(BadInput, match="use --target supervisely, cvat or onepanel"):
        render_target("kubeflow", state, tmp_path, {})
    with pytest.raises(BadInput, match="--namespace"):
        render_target("onepanel", state, tmp_path, {})


def test_role_grant_files_hold_no_secret(tmp_path: Path) -> None:
    files = render_pair(grant(Role(role_name="r")), tmp_path, "c")
    assert [f.secret for f in files] == [False, False, False]


def test_masking_lives_in_output_and_render_keeps_the_names() -> None:
    from provision import output, render

    assert render.mask is output.mask and render.mask_text is output.mask_text
    assert render.secrets_of is output.secrets_of
    source = (REPO / "provision" / "output.py").read_text()
    assert "provision.render" not in source


def test_concurrent_threads_never_share_a_backup(tmp_path: Path) -> None:
    from provision.files import Replacement, replace_all

    target = tmp_path / "f"
    target.write_bytes(b"0")
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            replace_all([Replacement(target, str(i).encode())])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(list(tmp_path.glob("f.provision-backup-*"))) == 8


@pytest.mark.parametrize(("existing", "expected"), [
    ("\ufeffSTORAGE_PROVIDER=http\n", "\ufeffSTORAGE_PROVIDER=minio\n"),
    ("STORAGE_PROVIDER= # empty for now\n", "STORAGE_PROVIDER= minio # empty for now\n"),
    ("STORAGE_PROVIDER\n", "STORAGE_PROVIDER=minio\n"),
    ("  export STORAGE_PROVIDER='http'#quoted\r\n", "  export STORAGE_PROVIDER=minio #quoted\r\n"),
    ("A=1\r\nB=2\r\nC=3", "A=1\r\nB=2\r\nC=3\r\n\r\n# h\r\nSTORAGE_PROVIDER=minio\r\n"),
    ("A=1\n\nSTORAGE_IAM_ROLE=r # old\nB=2\n", "A=1\n\nB=2\n\n# h\nSTORAGE_PROVIDER=minio\n"),
])
def test_merge_env_keeps_every_byte_but_the_values(existing: str, expected: str) -> None:
    from provision.render import ENV_KEYS, merge_env

    assert merge_env(existing, "# h\nSTORAGE_PROVIDER=minio\n", ENV_KEYS) == expected


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write_and_by_destroy(tmp_path: Path) -> None:
    """A writer SIGKILLed between writing and renaming leaves ``.<name>.<pid>.<random>.tmp`` (it may hold a secret:
    a copy of the state). The next write of that file, and `StateStore.delete` (destroy), remove it; a temporary
    file of a running process is left alone."""
    store = StateStore("e1", tmp_path / "state")
    store.directory.mkdir(mode=0o700)
    store.path.write_text("{}")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from provision.files import atomic_open\n"
         "with atomic_open(Path(sys.argv[1])) as fh:\n"
         "    fh.write(b'sig=SECRET'); fh.flush(); print('written', flush=True); time.sleep(60)\n",
         str(store.path)], env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"written\n"
        (orphan,) = store.directory.glob(".e1.json.*.tmp")
        assert orphan.name.startswith(f".e1.json.{writer.pid}.") and orphan.read_bytes() == b"sig=SECRET"
        files_module.atomic_write(store.path, b"{}")  # the writer still runs: its file stays
        assert orphan.exists()
    finally:
        writer.kill()
        writer.wait()
    files_module.atomic_write(tmp_path / "state" / "e2.json", b"{}")  # another file's write leaves it alone
    assert orphan.exists()
    other = store.directory / f".e3.json.{writer.pid}.x1y2.tmp"  # another env's, its writer killed too
    other.write_bytes(b"sig=SECRET")
    running = store.directory / f".e4.json.{os.getppid()}.x1y2.tmp"  # its writer runs
    running.write_bytes(b"")
    store.delete()  # removes the orphans of every file of the state directory
    assert sorted(p.name for p in store.directory.iterdir()) == [running.name, "e2.json"]
    running.unlink()

    orphan.write_bytes(b"sig=SECRET")  # the same left by a killed run, found by the next save instead
    store.save(store.load())
    assert sorted(p.name for p in store.directory.iterdir()) == ["e1.json", "e2.json"]
