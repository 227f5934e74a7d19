"""onectl is its own small package: it shares only the generated stubs with the rest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import onectl.cli, onectl.client, onectl.machine, onectl.commands.run
leaked = sorted({m.split(".")[0] for m in sys.modules} & {"init", "onebuild", "tests"})
print(",".join(leaked))
"""


def test_onectl_imports_neither_the_init_nor_the_build_package() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == ""


def test_parser_and_run_do_not_load_grpcio() -> None:
    # `onectl run` and `--help` must not pay for grpcio's import (~0.13 s) they do not use.
    probe = "import sys, onectl.cli, onectl.machine; print('grpc' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == "False"
