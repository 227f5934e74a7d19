"""The habits of DESIGN.md, enforced: ruff and mypy (strict) clean on the project's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CODE = ["init", "onebuild", "onectl", "bench", "tests", "dodo.py"]


def test_ruff_is_clean() -> None:
    proc = subprocess.run([str(BIN / "ruff"), "check", *CODE], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout


def test_mypy_strict_is_clean() -> None:
    proc = subprocess.run([str(BIN / "mypy"), "init", "onebuild", "onectl", "bench", "dodo.py"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
