"""``provision --help`` and ``import provision.cli`` stay light: no cloud SDK, no rich, no jinja2, no pydantic
(each command imports what it needs when it runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("boto3", "botocore", "azure", "google", "rich", "jinja2", "pydantic", "pydantic_core")


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this interpreter on the repository's `provision` in a clean subprocess."""
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def heavy(modules: list[str]) -> list[str]:
    return sorted({m for m in modules if m.split(".")[0] in HEAVY})


def test_import_cli_imports_nothing_heavy() -> None:
    result = python("-c", "import sys, provision.cli; print('\\n'.join(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    modules = result.stdout.split()
    assert "provision.cli.env" in modules and "typer" in modules  # the listing is real
    assert heavy(modules) == []


@pytest.mark.parametrize("args", [["--help"], ["s3", "--help"], ["render-env", "--help"], ["sandbox", "--help"],
                                  ["cvat", "attach", "--help"]])
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    result = python("-X", "importtime", "-m", "provision", *args)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    modules = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")]
    assert {"provision.cli", "provision.cli.env", "provision.cli.data", "typer.main"} <= set(modules)  # it reported
    assert heavy(modules) == []
