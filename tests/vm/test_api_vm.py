"""The API over hybrid vsock, end to end: boot the UKI with vhost-device-vsock (onectl's run
machinery), wait for READY on the host's port-1025 socket, drive the guest with `onectl` and with a
plain grpcio client, shut it down over the API. Benchmarks are printed and written to
target/bench/api_vsock.json, never asserted."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from onectl.machine import Machine, MachineConfig
from onectl.relay import HybridVsockRelay
from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.cli import onectl
from tests.fixtures.paths import ROOT, TARGET
from tests.fixtures.vm import BOOT_TIMEOUT, Artifacts, boot_machine

pytestmark = pytest.mark.vm

BENCH = TARGET / "bench" / "api_vsock.json"
BOOTS = 5
CALLS = 1000


def _config(artifacts: Artifacts, *, direct: bool = False) -> MachineConfig:
    # restricted: the tests need no router or DNS, so nothing the guest sends leaves the host.
    if direct:
        return MachineConfig(kernel=artifacts.bzimage, boot="direct", initrd=artifacts.initramfs,
                             append=artifacts.cmdline, net="restricted", accel="tcg")
    return MachineConfig(kernel=artifacts.uki, boot="uefi", net="restricted", accel="tcg")


def _record(key: str, value: object) -> None:
    """Merge one figure into target/bench/api_vsock.json (tests may run alone or in any order)."""
    BENCH.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads(BENCH.read_text()) if BENCH.exists() else {}
    data[key] = value
    BENCH.write_text(json.dumps(data, indent=2) + "\n")
    print(f"bench {key}: {value}")


def _assert_clean_power_off(machine: Machine) -> None:
    assert machine.vm is not None
    assert machine.wait_exit(120) == 0, machine.vm.tail()
    console = machine.vm.console()
    assert "powering off" in console
    assert "Kernel panic" not in console
    assert "Attempted to kill init" not in console


def test_onectl_and_grpcio_over_hybrid_vsock_then_shutdown(
        artifacts: Artifacts, tmp_path: Path, machines: list[Machine]) -> None:
    machine = Machine(_config(artifacts), tmp_path / "run").start()
    machines.append(machine)
    address = str(machine.address)
    assert address == f"vsock-uds:{machine.run_dir}/vm.vsock:1024"
    # Asked while the guest still boots: onectl retries the handshake until the API listens.
    early = subprocess.Popen(
        [sys.executable, "-m", "onectl", "--connect-timeout", str(BOOT_TIMEOUT), "-a", address,
         "health"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        machine.wait_ready(BOOT_TIMEOUT)
        out, err = early.communicate(timeout=60)
    finally:
        early.kill()
    assert early.returncode == 0, err
    assert "yes" in out
    assert machine.ready is not None and machine.ready.lines == [b"READY\n"]

    r = onectl("-a", address, "-o", "json", "health")
    assert r.returncode == 0, r.stderr
    health = json.loads(r.stdout)
    assert health["healthy"] is True and health["version"]

    # A plain grpcio client generated from the proto, through the relay: wire compatibility.
    with HybridVsockRelay(machine.vsock_socket, 1024, connect_timeout=10) as relay:
        channel = grpc.insecure_channel(relay.target)
        stub = one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.Health(one_pb2.Empty(), timeout=30)
        assert reply.healthy is True
        assert reply.version == health["version"]
        samples = []
        for _ in range(CALLS):
            start = time.perf_counter()
            stub.Health(one_pb2.Empty(), timeout=30)
            samples.append((time.perf_counter() - start) * 1000)
        channel.close()
    samples.sort()
    _record("health_rtt_hybrid_vsock_ms", {
        "calls": CALLS, "median": round(statistics.median(samples), 3),
        "p99": round(samples[int(CALLS * 0.99) - 1], 3), "max": round(samples[-1], 3),
        "note": "TCG guest, grpcio client through onectl's relay and vhost-device-vsock"})

    r = onectl("-a", address, "netinfo", "-o", "json")
    assert r.returncode == 0, r.stderr
    names = [i["name"] for i in json.loads(r.stdout)["interfaces"]]
    assert "lo" in names and "eth0" in names, names
    r = onectl("-a", address, "netinfo")
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("NAME"), r.stderr

    # A port nobody listens on: the daemon resets each CONNECT; onectl gives up with code 3.
    r = onectl("--connect-timeout", "2", "-a", f"vsock-uds:{machine.vsock_socket}:2000",
               "health")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "nothing listens on vsock port 2000" in r.stderr

    r = onectl("-a", address, "shutdown", "--timeout", "5")
    assert r.returncode == 0, r.stderr
    assert "shutdown accepted" in r.stdout
    _assert_clean_power_off(machine)
    assert machine.vm is not None
    assert "shutdown requested over the API" in machine.vm.console()

    # The guest is gone: the same command now cannot connect (exit code 3, one line).
    machine.stop(timeout=10)
    r = onectl("--connect-timeout", "1", "-a", address, "health")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("onectl: cannot connect to")


def test_onectl_run_serves_until_interrupted(artifacts: Artifacts, tmp_path: Path) -> None:
    """The command users type: `onectl run UKI`, then Ctrl-C stops the VM cleanly."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "onectl", "-o", "json", "run", str(artifacts.uki),
         "--net", "restricted", "--accel", "tcg", "--run-dir", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # one JSON line once READY arrived
        assert line, proc.stderr.read() if proc.stderr else ""
        info = json.loads(line)
        assert info["ready_seconds"] > 0
        r = onectl("-a", info["address"], "health")
        assert r.returncode == 0, r.stderr
        assert "healthy:            yes" in r.stdout
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "Shutdown via the API" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    console = (run_dir / "console.log").read_text()
    assert "powering off" in console and "Kernel panic" not in console
    assert not (run_dir / "vm.vsock_1025").exists()  # the ready listener cleaned up


@pytest.mark.parametrize("boot", ["uki", "direct"])
def test_bench_qemu_start_to_ready(boot: str, artifacts: Artifacts, tmp_path: Path,
                                   machines: list[Machine]) -> None:
    """qemu start → READY on the host's socket, median of 5 boots (TCG). UKI: q35 + OVMF;
    direct: microvm with bzImage + initramfs."""
    config = _config(artifacts, direct=boot == "direct")
    seconds = []
    for i in range(BOOTS):
        machine = boot_machine(config, tmp_path / f"boot{i}")
        machines.append(machine)
        assert machine.ready_seconds is not None
        seconds.append(machine.ready_seconds)
        assert machine.stop(timeout=60) == 0  # Shutdown over the API, clean power-off
    _record(f"qemu_start_to_ready_{boot}_s", {
        "boots": BOOTS, "median": round(statistics.median(seconds), 3),
        "min": round(min(seconds), 3), "max": round(max(seconds), 3),
        "all": [round(s, 3) for s in seconds],
        "machine": "q35 + OVMF, UKI" if boot == "uki" else "microvm, bzImage + initramfs",
        "accel": "tcg", "memory_mib": config.memory_mib})
