"""make delegates to doit; `make help` and `doit list` document every target in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOIT = str(Path(sys.executable).parent / "doit")


def test_make_help_lists_every_target_with_one_line() -> None:
    mk = (ROOT / "mvirt-one.mk").read_text()
    targets = re.findall(r"^([a-z-]+):", mk, re.M)
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    helped = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(targets) == set(helped)
    for target in targets:
        assert len(helped[target].split()) > 2, f"{target} has no description"


def test_every_doit_task_has_a_one_line_doc_and_make_delegates_to_it() -> None:
    out = subprocess.run([DOIT, "list"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    tasks = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    for name in ("one", "kernel", "initramfs", "menuconfig", "clean_build", "distclean",
                 "init", "static", "runtime", "rootfs", "uki", "proto"):
        assert name in tasks and tasks[name].strip(), name
    mk = (ROOT / "mvirt-one.mk").read_text()
    for make_target, task in (("one", "one"), ("kernel", "kernel"), ("clean", "clean_build"),
                              ("distclean", "distclean"), ("menuconfig", "menuconfig")):
        recipe = re.search(rf"^{make_target}:.*\n\t(.*)", mk, re.M)
        assert recipe and recipe.group(1).endswith(f" {task}"), make_target
