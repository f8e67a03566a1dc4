"""Lint, format and strict type checks, so the one test command covers them too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def test_ruff_lint() -> None:
    p = run(tool("ruff"), "check", ".", "--output-format", "concise")
    assert p.returncode == 0, p.stdout + p.stderr


def test_ruff_format() -> None:
    p = run(tool("ruff"), "format", "--check", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_strict() -> None:
    p = run(sys.executable, "-m", "mypy")
    assert p.returncode == 0, p.stdout + p.stderr
