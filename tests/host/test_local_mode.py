"""The init in local mode, run for real as a process on this host."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import LocalInit
from tests.fixtures.pods import processes

ROOT = Path(__file__).resolve().parents[2]


def _wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float, seen: list[str]) -> str:
    assert proc.stderr is not None
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if regex.search(line):
            return line
    raise AssertionError(f"no line matching {pattern!r}; got:\n{''.join(seen)}")


def _zombies_of(pid: int) -> list[int]:
    return [p.pid for p in processes() if p.state == "Z" and p.ppid == pid]


def test_orphaned_grandchild_is_reaped_by_the_subreaper(tmp_path: Path) -> None:
    hooks = tmp_path / "boot.d"
    hooks.mkdir()
    marker = tmp_path / "grandchild.pid"
    hook = hooks / "10-orphan"
    # The hook exits at once; its background child lives on, orphaned, and must be re-parented
    # to the init (the subreaper), then reaped when it exits.
    hook.write_text(f"#!/bin/sh\nsh -c 'echo $$ > {marker}; sleep 1' &\nexit 0\n")
    hook.chmod(0o755)
    proc = subprocess.Popen(
        [sys.executable, "-m", "init", "--data-dir", str(tmp_path / "data"),
         "--listen", f"unix:{tmp_path / 'api.sock'}", "--hooks-dir", str(hooks)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        _wait_line(proc, r"phase ready", 30, seen)
        line = _wait_line(proc, r"reaped orphan pid \d+", 30, seen)
        grandchild = int(marker.read_text())
        assert f"reaped orphan pid {grandchild} (exited with 0)" in line
        assert not _zombies_of(proc.pid)
        assert proc.poll() is None, "the init must survive its children"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0


def test_bad_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "init", "--data-dir", str(tmp_path),
                           "--listen", "vsock:5"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("mvirt-one-init: --listen 'vsock:5': use unix:PATH or "
                                   "tcp:HOST:PORT")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_local_mode_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "init", "--data-dir", str(tmp_path)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    _wait_line(proc, r"phase ready", 30, seen)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None
    assert f"shutdown requested ({sig.name})" in proc.stderr.read()


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_no_other_user_can_enter_the_data_directory(image_registry: Registry,
                                                    busybox_image: Pushed) -> None:
    # Not under pytest's tmp_path: that is already 0700, which would hide what the init does.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="one-data-") as top:
        os.chmod(top, 0o711)
        data = Path(top) / "data"
        data.mkdir(mode=0o755)  # as an older init, or a user, made it
        init = LocalInit(Path(top), f"unix:{top}/api.sock")
        try:
            with init.client() as stub:
                for _ in stub.PullImage(one_pb2.PullImageRequest(
                        reference=f"{image_registry.address}/{busybox_image.name}"), timeout=60):
                    pass
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
            busybox = next((data / "images" / "rootfs").glob("*/bin/busybox"))
            nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                     "--clear-groups", "cat", str(busybox)],
                                    capture_output=True, text=True)
            assert nobody.returncode != 0 and "Permission denied" in nobody.stderr, nobody
        finally:
            assert init.stop() == 0, init.log()
