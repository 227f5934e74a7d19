"""The OCI runtime step: the static crun it builds (cached after the first build) and RUNTIME=path.

These call the real build (apt-get against Debian's mirror, gcc); after the first run the binary
comes from the cache outside the clone, so they take about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from onebuild import cache, paths, runtime
from onebuild.tools import BuildError

BUSYBOX = Path("/bin/busybox")  # from busybox-static: one static binary is a whole rootfs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runtime.build() into a private directory (target/runtime/ belongs to the real build)."""
    out = tmp_path_factory.mktemp("runtime")
    runtime.build(out_dir=out)
    return out


def test_build_installs_static_crun_with_runtime_json(built: Path) -> None:
    info = runtime.runtime_info(built)
    binary = built / "crun"
    assert info["name"] == "crun"
    assert info["path_in_initramfs"] == "/usr/bin/crun"
    assert info["source"].startswith("debian:crun 1.8.1-")
    assert info["static"] is True
    assert info["sha256"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    assert runtime.runtime_binary(built) == binary
    assert sorted(p.name for p in built.iterdir()) == ["crun", "runtime.json"]


def test_built_crun_is_static_per_pyelftools(built: Path) -> None:
    assert runtime.static_elf_problems(built / "crun") == []


def test_built_crun_is_stripped_and_small(built: Path) -> None:
    # Measured 1.7 MB stripped; a debug build would be several MB and pay twice (UKI and RAM).
    size = (built / "crun").stat().st_size
    assert 1_000_000 < size < 3_000_000, size
    assert b".debug_info" not in (built / "crun").read_bytes()


def test_built_crun_version_is_1_8_1(built: Path) -> None:
    out = subprocess.run([built / "crun", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "crun version 1.8.1"
    # seccomp and capabilities were linked in (their static archives were found).
    assert "+SECCOMP" in out.stdout and "+CAP" in out.stdout
    assert "+SYSTEMD" not in out.stdout


def test_static_check_rejects_a_dynamic_binary_and_a_non_elf(tmp_path: Path) -> None:
    problems = runtime.static_elf_problems(Path("/usr/bin/true"))
    assert any("loader" in p for p in problems)
    assert any("libc.so.6" in p for p in problems)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert runtime.static_elf_problems(script) == [f"{script} is not an ELF file"]


def test_second_build_is_a_cache_hit() -> None:
    first, source = runtime.build_static_crun()
    mtime = first.stat().st_mtime_ns
    start = time.monotonic()
    again, source_again = runtime.build_static_crun()
    elapsed = time.monotonic() - start
    assert (again, source_again) == (first, source)
    assert again.stat().st_mtime_ns == mtime  # not rebuilt
    assert again.is_relative_to(paths.cache_dir() / "runtime")
    assert elapsed < 20, f"a cache hit took {elapsed:.1f}s"
    inputs = json.loads(again.with_name("inputs.json").read_text())
    assert again.parent.name == cache.key(inputs)
    assert inputs["recipe"] == runtime.RECIPE_VERSION


def test_runtime_override_installs_the_given_binary(tmp_path: Path, built: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(built, out)  # a crun from an earlier build must not linger
    mine = tmp_path / "my-runtime"
    shutil.copy2("/usr/bin/true", mine)
    runtime.build(str(mine), out_dir=out)
    info = runtime.runtime_info(out)
    assert info == {
        "name": "my-runtime",
        "path_in_initramfs": "/usr/bin/my-runtime",
        "source": str(mine),
        "sha256": hashlib.sha256(mine.read_bytes()).hexdigest(),
        "static": False,
    }
    assert sorted(p.name for p in out.iterdir()) == ["my-runtime", "runtime.json"]
    assert (out / "my-runtime").read_bytes() == mine.read_bytes()
    assert os.access(out / "my-runtime", os.X_OK)


def test_choice_fingerprint_follows_the_override_file(tmp_path: Path) -> None:
    mine = tmp_path / "youki"
    mine.write_bytes(b"one")
    before = runtime.choice_fingerprint(str(mine))
    mine.write_bytes(b"two")
    assert runtime.choice_fingerprint(str(mine)) != before
    assert runtime.choice_fingerprint("") == f"crun recipe {runtime.RECIPE_VERSION}"


@pytest.mark.parametrize("bad", ["/nonexistent/youki", "/etc/hostname"])
def test_runtime_override_rejects_what_is_not_an_executable(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BuildError, match="RUNTIME="):
        runtime.build(bad, out_dir=tmp_path)
    assert not (tmp_path / "runtime.json").exists()


def test_runtime_override_rejects_a_script(tmp_path: Path) -> None:
    script = tmp_path / "runc"
    script.write_text('#!/bin/sh\nexec runc "$@"\n')
    script.chmod(0o755)
    with pytest.raises(BuildError, match="not an ELF binary"):
        runtime.build(str(script), out_dir=tmp_path / "out")


def _bundle(crun: Path, bundle: Path) -> None:
    """An OCI bundle: busybox-static as the rootfs, config.json from `crun spec`, edited."""
    assert BUSYBOX.is_file(), "busybox-static is not installed: apt-get install busybox-static"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
    subprocess.run([crun, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["/bin/busybox", "echo", "hello-from-crun"]
    config["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(config))


@pytest.mark.host
def test_static_crun_runs_a_container(tmp_path: Path, built: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("running a container with crun needs root")
    crun = built / "crun"
    bundle = tmp_path / "bundle"
    _bundle(crun, bundle)
    # This host has hybrid cgroups, which crun rejects; a private mount namespace with cgroup2 at
    # /sys/fs/cgroup and no cgroup manager is what works on such a host. The guest kernel
    # has pure cgroup2 and does not need this.
    command = (
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
        f'exec "{crun}" --root "{tmp_path / "state"}" --cgroup-manager=disabled '
        f'run --bundle "{bundle}" mvirt-one-test-{os.getpid()}'
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello-from-crun\n"
