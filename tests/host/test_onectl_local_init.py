"""onectl against the real init in local mode (`python -m init --listen unix:...`): the same
commands and exit codes as in a VM, without one."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli import onectl

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


class LocalInit:
    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "api.sock"
        self.log = workdir / "init.log"
        (workdir / "no-hooks").mkdir()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "init", "--data-dir", str(workdir / "data"),
                 "--listen", f"unix:{self.socket}", "--hooks-dir", str(workdir / "no-hooks")],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while "phase ready" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the init did not get ready:\n{self.log.read_text()}")
            time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)


@pytest.fixture
def init() -> Iterator[LocalInit]:
    workdir = Path(tempfile.mkdtemp(prefix="onectl-li-"))
    server = LocalInit(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_health_json(init: LocalInit) -> None:
    r = onectl("-a", init.address, "-o", "json", "health")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["healthy"] is True
    assert set(data) == {"healthy", "version", "running_pods", "running_containers"}


def test_netinfo_lists_the_hosts_loopback(init: LocalInit) -> None:
    r = onectl("-a", init.address, "netinfo", "-o", "json")
    assert r.returncode == 0, r.stderr
    interfaces = {i["name"]: i for i in json.loads(r.stdout)["interfaces"]}
    assert interfaces["lo"]["ipv4_address"] == "127.0.0.1"
    r = onectl("-a", init.address, "netinfo")
    assert r.returncode == 0
    assert any(line.split()[0] == "lo" for line in r.stdout.splitlines()[1:])


def test_shutdown_ends_local_mode_then_connect_fails(init: LocalInit) -> None:
    r = onectl("-a", init.address, "shutdown", "--timeout", "1")
    assert r.returncode == 0, r.stderr
    assert init.proc.wait(30) == 0, init.log.read_text()
    r = onectl("-a", init.address, "health")
    assert r.returncode == 3
    assert r.stderr.startswith(f"onectl: cannot connect to {init.address}")
    assert r.stderr.count("\n") == 1


def test_a_registry_it_cannot_reach_is_the_inits_answer(init: LocalInit) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = onectl("-a", init.address, "pull", f"127.0.0.1:{port}/absent:1")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"onectl: {init.address}: UNAVAILABLE: "), r.stderr
    assert f"127.0.0.1:{port}" in r.stderr
    assert r.stderr.count("\n") == 1
    r = onectl("-a", init.address, "health")  # and the init is still there
    assert r.returncode == 0, r.stderr
