"""The doit graph in a fresh clone: file-dependency tracking and byte-reproducible outputs.

Each build runs in its own clone of this repository's HEAD, so nothing is shared but the cache
outside the clone (kernel and crun, keyed by their inputs). `doit uki` builds everything the UKI
needs; `one` adds only the static single-binary init, which has its own test below.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.buildsteps import certs

ROOT = Path(__file__).resolve().parents[2]
DOIT = str(Path(sys.executable).parent / "doit")
OUTPUTS = ("initramfs.cpio.gz", "initramfs.cpio.zst", "mvirt-one.efi", "bzImage", "cmdline",
           "mvirt-one.spdx.json")

pytestmark = pytest.mark.host


def _doit(clone: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> str:
    """doit in `clone` (with `env` added to the environment); its output. `ok`: must succeed."""
    proc = subprocess.run([DOIT, *args], cwd=clone, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _executed(output: str) -> set[str]:
    """Tasks doit ran (".  name"); up-to-date ones print "-- name"."""
    return set(re.findall(r"^\.  (\w+)", output, re.M))


def _digests(clone: Path) -> dict[str, str]:
    return {name: hashlib.sha256((clone / "target" / name).read_bytes()).hexdigest()
            for name in OUTPUTS}


FIRST_BUILD: dict[str, str] = {}


@pytest.fixture(scope="module")
def clone_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = tmp_path_factory.mktemp("graph") / "a"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    ran = _executed(_doit(clone, "uki", "sbom"))
    assert {"proto", "kernel", "runtime", "init", "initramfs", "uki", "sbom"} <= ran
    FIRST_BUILD.update(_digests(clone))  # before any test edits the clone
    return clone


def test_second_build_runs_nothing(clone_a: Path) -> None:
    assert _executed(_doit(clone_a, "uki")) == set()


def test_changing_the_init_rebuilds_init_initramfs_uki_not_the_kernel(clone_a: Path) -> None:
    version = clone_a / "init" / "version.py"
    version.write_text(version.read_text().replace('VERSION = "', 'VERSION = "test-'))
    ran = _executed(_doit(clone_a, "uki"))
    assert {"init", "initramfs", "uki"} <= ran
    assert "kernel" not in ran and "runtime" not in ran


def test_a_comment_only_edit_refreezes_but_stops_there(clone_a: Path) -> None:
    # doit compares file checksums: the frozen init comes out byte-identical, so nothing
    # downstream of it is rebuilt.
    app = clone_a / "init" / "app.py"
    app.write_text(app.read_text() + "\n# a comment\n")
    assert _executed(_doit(clone_a, "uki")) == {"init"}


def test_extra_ca_certs_rebuild_initramfs_and_uki_not_the_kernel(
    clone_a: Path, tmp_path: Path
) -> None:
    pem = tmp_path / "site.pem"
    env = {"EXTRA_CA_CERTS": str(pem)}  # as `make one EXTRA_CA_CERTS=...` passes it
    bundle = clone_a / "target" / "initramfs.root" / "etc/ssl/certs/ca-certificates.crt"
    first = certs.make_ca(tmp_path / "first").read_bytes()
    pem.write_bytes(first)
    assert _executed(_doit(clone_a, "uki", env=env)) == {"initramfs", "uki"}
    assert bundle.read_bytes().endswith(first)
    assert _executed(_doit(clone_a, "uki", env=env)) == set()
    # a dependency by content: the same path with another certificate rebuilds
    second = certs.make_ca(tmp_path / "second").read_bytes()
    pem.write_bytes(second)
    assert _executed(_doit(clone_a, "uki", env=env)) == {"initramfs", "uki"}
    assert bundle.read_bytes().endswith(second) and first not in bundle.read_bytes()
    pem.write_text("not a certificate\n")
    failed = _doit(clone_a, "uki", env=env, ok=False)
    assert f"EXTRA_CA_CERTS={pem}: no PEM certificate in it" in failed
    assert _executed(_doit(clone_a, "uki")) == {"initramfs", "uki"}
    assert second not in bundle.read_bytes()


def test_editing_kernel_inputs_marks_the_kernel_for_rebuild(clone_a: Path) -> None:
    def kernel_status() -> str:
        out = _doit(clone_a, "list", "--status", "--all")
        return re.search(r"^(\w) kernel\b", out, re.M).group(1)  # type: ignore[union-attr]

    assert kernel_status() == "U"
    config = clone_a / "kernel.config"
    original = config.read_text()
    config.write_text(original + "\n# a comment is a change doit must see\n")
    assert kernel_status() == "R"
    config.write_text(original)
    version = clone_a / "kernel.version"
    version.write_text(version.read_text() + "\n")
    assert kernel_status() == "R"


def _status(clone: Path) -> dict[str, str]:
    """Each task's status letter from `doit list --status` (U up to date, R to run)."""
    out = _doit(clone, "list", "--status", "--all")
    return {name: letter for letter, name in re.findall(r"^(\w) (\w+)", out, re.M)}


def test_editing_a_shared_build_module_marks_every_step_using_it(clone_a: Path) -> None:
    subprocess.run(["git", "checkout", "-q", "--", "kernel.version"], cwd=clone_a, check=True)
    steps = ("kernel", "runtime", "init", "initramfs", "uki")
    assert {_status(clone_a)[step] for step in steps} == {"U"}
    tools = clone_a / "onebuild" / "tools.py"
    original = tools.read_text()
    tools.write_text(original + "\n# a change doit must see\n")
    status = _status(clone_a)
    assert {step: status[step] for step in steps} == dict.fromkeys(steps, "R")
    tools.write_text(original)
    assert {_status(clone_a)[step] for step in steps} == {"U"}


def test_everything_in_target_is_a_declared_target(clone_a: Path) -> None:
    code = ("import dodo, json; print(json.dumps([t for n in dir(dodo) if n.startswith('task_')"
            " for t in getattr(dodo, n)().get('targets', [])]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=clone_a, capture_output=True,
                          text=True, check=True)
    declared = {Path(t) if Path(t).is_absolute() else clone_a / t for t in json.loads(proc.stdout)}
    written = set((clone_a / "target").iterdir())
    assert written - declared == set()


def test_two_clean_builds_are_byte_identical(clone_a: Path, tmp_path: Path) -> None:
    clone_b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone_b)], check=True)
    _doit(clone_b, "uki", "sbom")
    assert _digests(clone_b) == FIRST_BUILD


@pytest.fixture(scope="module")
def clone_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone that only ever builds the runtime step (the static crun comes from the cache)."""
    clone = tmp_path_factory.mktemp("graph") / "runtime"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def test_the_runtime_shipped_follows_the_task_parameter(clone_runtime: Path) -> None:
    runc = shutil.which("runc")
    assert runc, "runc is not installed: apt-get install runc"

    def shipped() -> str:
        info = json.loads((clone_runtime / "target/runtime/runtime.json").read_text())
        return str(info["name"])

    assert _executed(_doit(clone_runtime, "runtime")) == {"runtime"}
    assert shipped() == "crun"
    assert _executed(_doit(clone_runtime, "runtime", "--runtime", runc)) == {"runtime"}
    assert shipped() == "runc"
    assert _executed(_doit(clone_runtime, "runtime", "--runtime", runc)) == set()
    # RUNTIME in the environment (how make passes it) is the parameter's default
    assert _executed(_doit(clone_runtime, "runtime", env={"RUNTIME": runc})) == set()
    assert _executed(_doit(clone_runtime, "runtime")) == {"runtime"}
    assert shipped() == "crun"


def _leftovers(clone: Path) -> list[str]:
    """What `git status` sees beyond a fresh clone (ignored files included), minus doit's
    dependency database, which doit itself rewrites after every command."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone,
                         capture_output=True, text=True, check=True).stdout
    return sorted(line[3:] for line in out.splitlines() if line[3:] != ".doit.db")


def test_clean_then_distclean_return_to_a_fresh_clone(clone_a: Path) -> None:
    # Runs last: it removes what the other tests built. A downloaded tarball and an unpacked
    # tree stand in for the real ones where the clone has none (its kernel came from the cache;
    # a kernel.config built before it was committed has another epoch in its key, and then the
    # clone unpacked and built one).
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=clone_a, check=True)
    tarball = clone_a / "target" / "linux-6.1.192.tar.xz"
    tarball.write_bytes(b"stand-in")
    (clone_a / "kernel").mkdir(exist_ok=True)
    if not (clone_a / "kernel" / "Makefile").exists():
        (clone_a / "kernel" / "Makefile").write_text("# stand-in\n")
    _doit(clone_a, "clean_build")
    assert _leftovers(clone_a) == ["kernel/", "target/"]
    assert [p.name for p in (clone_a / "target").iterdir()] == [tarball.name]
    _doit(clone_a, "distclean")
    assert _leftovers(clone_a) == []
