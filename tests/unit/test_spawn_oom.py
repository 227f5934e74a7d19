"""A protected init (PID 1 sets its oom_score_adj to -1000) never passes its protection on: its
children start with a normal score, so the OOM killer takes them, never the init."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from init.services.pod import spec

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import os, sys
from init.system import spawn
score = sys.argv[1]
if score == "protected":
    spawn.protect_from_oom()
else:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(score)
print(open("/proc/self/oom_score_adj").read().strip())
r, w = os.pipe()
pid = spawn.spawn(["cat", "/proc/self/oom_score_adj"], stdout=w)
os.close(w)
print(os.read(r, 100).decode().strip())
os.waitpid(pid, 0)
"""


def _scores(own: str) -> list[str]:
    """(the process's own score, its spawned child's), in a process of its own."""
    return subprocess.run([sys.executable, "-c", CHILD, own], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.split()


def test_children_never_inherit_the_init_s_score() -> None:
    # Raising one's own score takes no privilege: the same rule, seen from the other side.
    assert _scores("500") == ["500", "0"]


def _may_lower_the_score() -> bool:
    return subprocess.run(["sh", "-c", "echo -1 > /proc/self/oom_score_adj"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _may_lower_the_score(),
                    reason="lowering oom_score_adj needs CAP_SYS_RESOURCE (the VM test has it)")
def test_children_of_a_protected_init_get_a_normal_score() -> None:
    assert _scores("protected") == ["-1000", "0"]


def test_containers_ask_the_runtime_for_a_normal_score(tmp_path: Path) -> None:
    proc = spec.Process(["/bin/true"], [], "/", 0, 0)
    doc = spec.config(proc, rootfs=tmp_path, hostname="p", etc_files={})
    assert doc["process"]["oomScoreAdj"] == 0
