"""Dependency direction and code quality, as tests so that one command checks everything.

* import-linter: ``bot`` never imports ``adapters``; ``engines`` import neither
  (contracts in pyproject.toml).
* ruff over the whole tree; mypy --strict over the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env, check=False)


def test_import_contracts() -> None:
    result = run(tool("lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_can_fail(tmp_path: Path) -> None:
    """A wrong import must be caught: plant one in a copy and expect a broken contract."""
    copy = tmp_path / "hushbrief"
    shutil.copytree(ROOT / "hushbrief", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "bot" / "planted.py").write_text("import hushbrief.adapters.console.chat\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([tool("lint-imports")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env, check=False)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_ruff() -> None:
    result = run(tool("ruff"), "check", "hushbrief", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = run(tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
