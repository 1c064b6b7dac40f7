"""The installed package, not the checkout: a wheel built from the repository (``pip wheel``) installed with
``--no-deps`` into a fresh venv whose dependencies come from the project's venv (a ``.pth`` line, so nothing is
downloaded but the build backend), run as the ``provision`` console script from an empty folder with no checkout on
the path: ``--version`` (from the provision-cv metadata), ``--help``, ``sandbox up``, an s3 flow and ``render-env``;
and, with the optional SDKs made unimportable (a ``sitecustomize`` on the path), ``azure`` and ``gcs`` exit 2 with
one line naming the venv's own pip command."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

BLOCKER = '''import importlib.abc, os, sys
BLOCKED = tuple(filter(None, os.environ.get("BLOCK_IMPORTS", "").split(",")))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
'''
"""A sitecustomize that makes the modules in ``$BLOCK_IMPORTS`` (comma-separated) fail to import, as if the extra
that installs them were not installed."""


class Installed:
    """A venv with the wheel installed, and a runner for its ``provision`` in a clean environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.home = root / "home"
        self.empty = root / "empty"
        self.deps = Path(sysconfig.get_paths()["purelib"])
        """The project venv's site-packages, on the venv's path for the dependencies (a ``.pth`` line); it may lie
        inside the checkout (a dev venv at ``.venv``)."""

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: the venv's bin first, a private HOME and XDG dirs, no PYTHONPATH, no clouds."""
        env = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
               "XDG_STATE_HOME": str(self.home / "state"), "XDG_CACHE_HOME": str(self.home / "cache"),
               "XDG_CONFIG_HOME": str(self.home / "config"), "XDG_DATA_HOME": str(self.home / "data"),
               "PROVISION_AZURITE": "off", "PROVISION_SDK_ATTEMPTS": "2", "NO_GCE_CHECK": "true"}
        env.update(extra)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """``provision ARGS`` from the empty folder."""
        return subprocess.run([str(self.venv / "bin" / "provision"), *args], cwd=self.empty, env=self.env(**extra),
                              capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("install")
    box = Installed(root)
    box.empty.mkdir()
    box.home.mkdir()
    wheels = root / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(wheels)],
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.skip(f"cannot build the wheel here (the build backend is fetched by pip): {build.stderr[-300:]}")
    (wheel,) = wheels.glob("provision_cv-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(box.venv)], check=True, timeout=300)
    site = Path(subprocess.run([str(box.venv / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "_project_deps.pth").write_text(f"{box.deps}\n")  # after the venv's own
    subprocess.run([str(box.venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300, env=box.env())
    yield box


def test_the_wheel_is_what_runs(installed: Installed) -> None:
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c", "import provision, sys; "
                            "print(provision.__file__); print(*sys.path, sep='\\n')"],
                           cwd=installed.empty, env=installed.env(), capture_output=True, text=True, check=True)
    path, *search = where.stdout.splitlines()
    assert installed.venv in Path(path).parents and REPO not in Path(path).parents
    # no checkout on the path; the one directory inside it allowed is the dependencies' site-packages (a dev venv at
    # REPO/.venv), whose .pth files (an editable install's line naming the checkout) Python does not follow
    inside = [p for p in search if p and (Path(p) == REPO or REPO in Path(p).parents)]
    assert [p for p in inside if Path(p).resolve() != installed.deps.resolve()] == [], inside


def test_version_and_help(installed: Installed) -> None:
    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout == "provision 0.1.0\n"
    helped = installed.run("--help")
    assert helped.returncode == 0 and "Exit codes:" in helped.stdout and installed.run("-h").stdout == helped.stdout


def test_sandbox_s3_and_render_env_from_an_empty_folder(installed: Installed) -> None:
    up = installed.run("sandbox", "up", "--json")
    try:
        assert up.returncode == 0, up.stderr
        services = {s["service"]: s for s in json.loads(up.stdout)["services"]}
        assert services["s3"]["port"] and services["azure"]["endpoint"] is None  # PROVISION_AZURITE=off
        applied = installed.run("s3", "--env", "sandbox", "--prefix", "demo", "--full", "--json")
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["grant"]["buckets"] == ["demo-public", "demo-private"]
        rendered = installed.run("render-env", "--env", "sandbox", "--out", ".", "--json")
        assert rendered.returncode == 0, rendered.stderr
        assert "STORAGE_ACCESS_KEY=" in (installed.empty / ".env").read_text()
        assert (installed.home / "state").exists() and not (installed.empty / ".provision").exists()
        verified = installed.run("verify", "--env", "sandbox", "--json")
        assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    finally:
        down = installed.run("sandbox", "down", "--json")
        assert down.returncode == 0 and json.loads(down.stdout)["stopped"] is True


@pytest.mark.parametrize("args, extra", [(["azure", "cont1", "--account", "acct1"], "azure"),
                                         (["gcs", "bucket1", "--project", "proj-123456"], "gcs")])
def test_without_the_extra_one_line_and_exit_2(installed: Installed, tmp_path: Path, args: list[str],
                                               extra: str) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    blocked = "azure.storage,azure.identity,azure.mgmt,azure.core,google.cloud,google.auth,google.api_core"
    result = installed.run(*args, PYTHONPATH=str(tmp_path), BLOCK_IMPORTS=blocked)
    assert result.returncode == 2, result.stderr
    pip = f"{installed.venv}/bin/python -m pip install 'provision-cv[{extra}]'"
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and pip in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    as_json = installed.run(*args, "--json", PYTHONPATH=str(tmp_path), BLOCK_IMPORTS=blocked)
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["hint"] == f"install it with: {pip}"
