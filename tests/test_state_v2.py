"""State v2: named grants; a version-1 file (the last one-grant format, kept as a golden file) loads as one grant."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provision.errors import BadInput
from provision.state import STATE_VERSION, State, StateStore, check_grant_name, default_grant_name, state_dir

GOLDEN_V1 = Path(__file__).parent / "golden" / "state_v1.json"


def test_v1_golden_loads_as_one_grant_and_saves_as_v2(tmp_path: Path) -> None:
    store = StateStore("sandbox", tmp_path)
    store.path.write_text(GOLDEN_V1.read_text())
    state = store.load()
    assert list(state.grants) == ["demo"]
    demo = state.grants["demo"]
    assert (demo.name, demo.env, demo.provider) == ("demo", "sandbox", "s3")
    assert demo.grant is not None and demo.grant.auth.access_key == "AKIAIOSFODNN7EXAMPLE"
    assert [r.kind for r in demo.resources] == ["bucket", "bucket", "iam_user", "user_policy", "access_key"]
    assert [r.out for r in state.renders] == ["/srv/supervisely"]
    store.save(state)
    saved = json.loads(store.path.read_text())
    assert saved["version"] == STATE_VERSION == 2
    assert set(saved) == {"version", "env", "state_id", "grants", "renders", "updated_at"}
    assert set(saved["grants"]["demo"]) == {"provider", "inputs", "grant", "resources", "migrated"}
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    again = store.load()
    assert again.grants["demo"].grant == demo.grant and again.state_id == state.state_id


def test_newer_version_is_refused_naming_it(tmp_path: Path) -> None:
    store = StateStore("e", tmp_path)
    store.path.write_text(json.dumps({"version": 3, "env": "e"}))
    with pytest.raises(BadInput, match="has version 3, newer than this provision knows"):
        store.load()


@pytest.mark.parametrize("content", ["{", '{"version": 2, "env": "e", "surprise": 1}', '["x"]',
                                     '{"version": 2, "env": "e", "grants": {"Bad Name": {}}}'])
def test_corrupt_state_is_one_line_bad_input(tmp_path: Path, content: str) -> None:
    store = StateStore("e", tmp_path)
    store.path.write_text(content)
    with pytest.raises(BadInput) as caught:
        store.load()
    assert str(store.path) in str(caught.value) and "\n" not in str(caught.value)


def test_state_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    store = StateStore("e", tmp_path)
    store.path.mkdir()
    with pytest.raises(BadInput, match="not a regular file"):
        store.load()


@pytest.mark.parametrize("name", ["a", "storage", "data-sets_2", "x" * 63])
def test_grant_names_accepted(name: str) -> None:
    assert check_grant_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "_a", "A", "a.b", "a b", "x" * 64, "é"])
def test_grant_names_refused(name: str) -> None:
    with pytest.raises(BadInput, match="invalid --grant"):
        check_grant_name(name)


def test_default_grant_name() -> None:
    assert default_grant_name("acme", []) == "acme"
    assert default_grant_name(None, ["My.Datasets", "b"]) == "my-datasets"
    with pytest.raises(BadInput):
        default_grant_name(None, [])


def test_select_and_one() -> None:
    state = State(env="e")
    assert state.select(None) == []
    with pytest.raises(BadInput, match="no credential yet"):
        state.one(None, "cvat attach")
    state.grant_state("a")
    state.grant_state("b")
    with pytest.raises(BadInput, match="holds no grant 'c' \\(it holds: a, b\\)"):
        state.select("c")
    assert [g.name for g in state.select("b")] == ["b"]


def test_state_dir_found_like_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISION_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    deep = tmp_path / "project" / "a" / "b"
    deep.mkdir(parents=True)
    assert state_dir(deep) == (tmp_path / "xdg" / "provision")
    (tmp_path / "project" / ".provision").mkdir()
    assert state_dir(deep) == tmp_path / "project" / ".provision"
    monkeypatch.setenv("PROVISION_STATE_DIR", str(tmp_path / "elsewhere"))
    assert state_dir(deep) == tmp_path / "elsewhere"


def test_state_directory_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = StateStore("e", tmp_path / "new" / ".provision")
        store.save(State(env="e"))
    finally:
        os.umask(old)
    assert oct((tmp_path / "new" / ".provision").stat().st_mode & 0o777) == "0o700"
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
