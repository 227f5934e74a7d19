"""The onectl command line as scripts use it: exit codes, one-line errors, `-o json` - run as a
real process against a grpclib server (the fake init) on unix and behind a fake hybrid vsock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.const import Status

from onectl import tools
from onectl.errors import OnectlError
from tests.unit.test_onectl_fakes import FakeHybridVsock, FakeInit

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


def onectl(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    full_env = {k: v for k, v in os.environ.items() if k != "ONECTL_ADDRESS"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "onectl", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("onectl: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="onectl-t-"))  # unix socket paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def init(short_tmp: Path) -> Iterator[FakeInit]:
    with FakeInit(short_tmp / "init.sock") as server:
        yield server


@pytest.fixture
def vsock(short_tmp: Path, init: FakeInit) -> Iterator[FakeHybridVsock]:
    with FakeHybridVsock(short_tmp / "vm.vsock", backend=init.path) as fake:
        yield fake


def test_health_text(init: FakeInit) -> None:
    r = onectl("-a", f"unix:{init.path}", "health")
    assert r.code == 0, r.err
    assert "healthy:" in r.out and "yes" in r.out
    assert "0.0.0-fake" in r.out


def test_health_json_after_or_before_the_command(init: FakeInit) -> None:
    for args in (("-a", f"unix:{init.path}", "health", "-o", "json"),
                 ("-o", "json", "-a", f"unix:{init.path}", "health")):
        r = onectl(*args)
        assert r.code == 0, r.err
        assert r.json() == {"healthy": True, "version": "0.0.0-fake", "running_pods": 0,
                            "running_containers": 0}


def test_unhealthy_exits_1(init: FakeInit) -> None:
    init.service.healthy = False
    r = onectl("-a", f"unix:{init.path}", "-o", "json", "health")
    assert r.code == 1
    assert r.json()["healthy"] is False  # type: ignore[index]


def test_address_from_the_environment(init: FakeInit) -> None:
    r = onectl("health", env={"ONECTL_ADDRESS": f"unix:{init.path}"})
    assert r.code == 0, r.err


def test_netinfo_table_and_json(init: FakeInit) -> None:
    r = onectl("-a", f"unix:{init.path}", "netinfo")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "MAC", "IPV4", "GATEWAY", "IPV6", "GATEWAY6", "DNS"]
    assert lines[1].split()[:3] == ["lo", "00:00:00:00:00:00", "127.0.0.1/8"]
    assert lines[2].split() == ["eth0", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "-",
                                "-", "10.0.2.3"]
    data = onectl("-a", f"unix:{init.path}", "netinfo", "-o", "json").json()
    assert isinstance(data, dict)
    assert [i["name"] for i in data["interfaces"]] == ["lo", "eth0"]
    assert data["interfaces"][1]["ipv4_dns"] == ["10.0.2.3"]
    assert data["interfaces"][0]["delegated_prefix"] == ""  # every field present for scripts


def test_shutdown_passes_the_grace_period(init: FakeInit) -> None:
    r = onectl("-a", f"unix:{init.path}", "shutdown", "--timeout", "7")
    assert r.code == 0, r.err
    assert init.service.shutdowns == [7]
    r = onectl("-a", f"unix:{init.path}", "-o", "json", "shutdown")
    assert r.json() == {"shutdown": "accepted", "timeout_seconds": 0}
    assert init.service.shutdowns == [7, 0]


def test_grpc_error_from_the_server_exits_1(init: FakeInit) -> None:
    init.service.error = (Status.FAILED_PRECONDITION, "pods still running")
    r = onectl("-a", f"unix:{init.path}", "health")
    assert r.code == 1
    assert_one_line_error(r, "FAILED_PRECONDITION", "pods still running")
    assert r.out == ""


def test_unavailable_sent_by_the_server_is_its_answer_and_exits_1(init: FakeInit) -> None:
    # An init that cannot reach a registry says UNAVAILABLE itself: the init was reached.
    init.service.error = (Status.UNAVAILABLE, "registry r.example: connection refused")
    init.service.health_fails = False
    r = onectl("-a", f"unix:{init.path}", "netinfo")
    assert r.code == 1
    assert_one_line_error(r, f"unix:{init.path}: UNAVAILABLE: registry r.example: "
                             "connection refused")
    assert "cannot connect" not in r.err


def test_over_hybrid_vsock(vsock: FakeHybridVsock, init: FakeInit) -> None:
    r = onectl("-a", f"vsock-uds:{vsock.path}", "-o", "json", "health")
    assert r.code == 0, r.err
    assert r.json()["healthy"] is True  # type: ignore[index]
    r = onectl("-a", f"vsock-uds:{vsock.path}:1024", "shutdown", "--timeout", "3")
    assert r.code == 0, r.err
    assert init.service.shutdowns == [3]
    assert set(vsock.requests) == {b"CONNECT 1024\n"}


def test_hybrid_vsock_retries_until_the_guest_listens(short_tmp: Path, init: FakeInit) -> None:
    with FakeHybridVsock(short_tmp / "boot.vsock", backend=init.path,
                         replies=["reset", "close", "reset", "ok"]) as fake:
        r = onectl("-a", f"vsock-uds:{fake.path}", "health")
    assert r.code == 0, r.err
    assert fake.connections >= 4


def test_hybrid_vsock_garbled_handshake_exits_3(short_tmp: Path) -> None:
    with FakeHybridVsock(short_tmp / "bad.vsock", replies=["garbled"]) as fake:
        r = onectl("-a", f"vsock-uds:{fake.path}", "health")
    assert r.code == 3
    assert_one_line_error(r, f"cannot connect to vsock-uds:{fake.path}:1024",
                          "unexpected hybrid-vsock handshake reply")


def test_hybrid_vsock_nothing_listening_exits_3(short_tmp: Path) -> None:
    with FakeHybridVsock(short_tmp / "idle.vsock", replies=["close"]) as fake:
        r = onectl("--connect-timeout", "0.5", "-a", f"vsock-uds:{fake.path}:2000", "health")
    assert r.code == 3
    assert_one_line_error(r, "nothing listens on vsock port 2000")
    assert set(fake.requests) == {b"CONNECT 2000\n"}


@pytest.mark.parametrize("address", ["unix:{tmp}/absent.sock", "vsock-uds:{tmp}/absent.vsock",
                                     "tcp:127.0.0.1:1"])
def test_unreachable_exits_3(short_tmp: Path, address: str) -> None:
    address = address.format(tmp=short_tmp)
    r = onectl("-a", address, "health")
    assert r.code == 3
    assert_one_line_error(r, f"cannot connect to {address}")


@pytest.mark.parametrize("args", [
    ("health",),  # no address
    ("-a", "/tmp/x.sock", "health"),  # no scheme
    ("-a", "tcp:127.0.0.1:99999", "health"),
    ("-a", "unix:/x", "health", "-o", "yaml"),
    ("-a", "unix:/x", "shutdown", "--timeout", "-1"),
    ("frobnicate",),
    (),
    ("run",),  # neither UKI nor --kernel
    ("run", "a.efi", "--kernel", "bzImage"),
    ("run", "--kernel", "bzImage"),  # without --initrd
])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    r = onectl(*args)
    assert r.code == 2, (r.out, r.err)
    assert "Traceback" not in r.err


def test_help_exits_0() -> None:
    r = onectl("--help")
    assert r.code == 0
    assert "exit codes:" in r.out and "vsock-uds:PATH[:PORT]" in r.out


def test_print_cloud_hypervisor_for_a_uki() -> None:
    r = onectl("run", "target/mvirt-one.efi", "--run-dir", "/run/vm1",
               "--print-cloud-hypervisor")
    assert r.code == 0, r.err
    assert r.out.split() == [
        "cloud-hypervisor", "--kernel", str(ROOT / "target/mvirt-one.efi"),
        "--cpus", "boot=1", "--memory", "size=128M", "--vsock", "cid=3,socket=/run/vm1/vm.vsock",
        "--balloon", "size=0,free_page_reporting=on", "--net", "tap=tap0",
        "--serial", "file=/run/vm1/console.log", "--console", "off", "--rng", "src=/dev/urandom"]


def test_print_cloud_hypervisor_for_direct_boot() -> None:
    r = onectl("run", "--kernel", "/k/bzImage", "--initrd", "/k/initrd.gz", "--append",
               "console=ttyS0 quiet", "--memory", "256", "--cpus", "2", "--net", "none",
               "--console", "--cid", "7", "--run-dir", "/run/vm2", "--print-cloud-hypervisor")
    assert r.code == 0, r.err
    assert r.out.strip() == (
        "cloud-hypervisor --kernel /k/bzImage --initramfs /k/initrd.gz "
        "--cmdline 'console=ttyS0 quiet' --cpus boot=2 --memory size=256M "
        "--vsock cid=7,socket=/run/vm2/vm.vsock --balloon size=0,free_page_reporting=on "
        "--serial tty --console off --rng src=/dev/urandom")


def test_run_names_the_package_when_qemu_is_missing(tmp_path: Path) -> None:
    r = onectl("run", "target/mvirt-one.efi", "--run-dir", str(tmp_path / "run"),
               env={"PATH": str(tmp_path)})
    assert r.code == 4
    assert_one_line_error(r, "qemu-system-x86_64 not found", "qemu-system-x86")


def test_run_names_the_doit_task_when_vhost_device_vsock_is_missing(tmp_path: Path) -> None:
    try:
        qemu = tools.qemu()
    except OnectlError:
        pytest.skip("needs qemu-system-x86_64 to get past the qemu check")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / qemu.name).symlink_to(qemu)
    uki = tmp_path / "fake.efi"
    uki.write_bytes(b"MZ")
    r = onectl("run", str(uki), "--run-dir", str(tmp_path / "run"),
               env={"PATH": str(bindir), "MVIRT_ONE_CACHE": str(tmp_path / "cache")})
    assert r.code == 4
    assert_one_line_error(r, "vhost-device-vsock not found", "doit hosttools")


def test_run_reports_a_missing_image(tmp_path: Path) -> None:
    r = onectl("run", str(tmp_path / "absent.efi"), "--run-dir", str(tmp_path / "run"))
    assert r.code == 4
    assert_one_line_error(r, "absent.efi: no such file")
