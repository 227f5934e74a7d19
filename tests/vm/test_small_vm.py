"""The smallest VM the UKI is for: 96 MiB under OVMF runs a pod's whole life — pull, create,
start, logs, exec, stop, delete — and powers off cleanly.

At 96 MiB OVMF keeps ~45 MiB for itself until the kernel takes over, and leaves ~37 MB contiguous
(27.6-63 MiB) plus 7 MiB below 8 MiB. That must hold the UKI read from the ESP (the firmware's
file buffer is freed after loading, leaving a hole at the top), the kernel's decompression buffer
(12 MiB, contiguous, 2 MiB-aligned, at a random slot: KASLR) and, unless the kernel is handed
over the initrd in place (uki.py), a contiguous copy of the initrd. Measured with padded initrds:
started through LoadImage the limit was ~7.2 MB of initrd, handed over 9 MB or more. What the
init keeps for itself is what the pod does not get.

The registry is the host's loopback one, reached through a qemu guestfwd under restrict=on (see
test_image_vm.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from onectl.machine import Machine, MachineConfig
from tests.fixtures.cli import onectl
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.splice import guestfwd
from tests.fixtures.vm import (
    BOOT_TIMEOUT,
    FIRST_LINE_TIMEOUT,
    INIT_STARTS,
    Artifacts,
    uki_with_cmdline,
)
from tests.fixtures.vm_pods import check_logs_and_exec, stop_and_remove, write_pod_file

pytestmark = pytest.mark.vm

GUEST_REGISTRY = "10.0.2.100:5000"
MEMORY_MIB = 96


def test_a_pod_lives_its_whole_life_in_a_96_mib_vm_booted_from_the_uki(
        artifacts: Artifacts, tmp_path: Path, image_proxy: Proxy, busybox_image: Pushed,
        machines: list[Machine]) -> None:
    kernel = uki_with_cmdline(artifacts, f"one.insecure_registries={GUEST_REGISTRY}",
                              tmp_path / "one.efi")
    config = MachineConfig(
        kernel=kernel, boot="uefi", net="restricted",
        guestfwd=[guestfwd(GUEST_REGISTRY, image_proxy.address)], accel="tcg",
        memory_mib=MEMORY_MIB)
    machine = Machine(config, tmp_path / "run").start()
    machines.append(machine)
    assert machine.vm is not None
    # The firmware failing to start the kernel prints nothing more: give up on the first line's
    # deadline instead of READY's.
    machine.vm.wait_for(INIT_STARTS, FIRST_LINE_TIMEOUT)
    machine.wait_ready(BOOT_TIMEOUT)
    a = str(machine.address)
    ready = re.search(r"phase ready.*memory available ([\d.]+) of ([\d.]+) MiB",
                      machine.console_log.read_text())
    assert ready, machine.console_log.read_text()
    print(f"memory available at READY in a {MEMORY_MIB} MiB VM: {ready[1]} of {ready[2]} MiB")

    ref = f"{GUEST_REGISTRY}/{busybox_image.name}"
    pulled = onectl("-a", a, "--rpc-timeout", "300", "pull", ref, "-o", "json", timeout=400)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == busybox_image.digest

    podfile = write_pod_file(tmp_path / "pod.json", "small", ref)
    image_proxy.log.clear()
    created = onectl("-a", a, "--rpc-timeout", "300", "pod", "create", "-f", str(podfile),
                     "-o", "json", timeout=400)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["state"] == "POD_STATE_CREATED", created.stdout
    assert image_proxy.requests("GET", "blobs") == []  # the pulled image, not a second transfer
    started = onectl("-a", a, "pod", "start", "small", "-o", "json", timeout=120)
    assert started.returncode == 0, started.stderr + machine.console_log.read_text()
    assert json.loads(started.stdout)["state"] == "POD_STATE_RUNNING", started.stdout

    check_logs_and_exec(a, "small")
    assert_no_large_percpu_metadata(a, "small")
    stop_and_remove(a, "small")
    assert machine.stop(timeout=120) == 0


def assert_no_large_percpu_metadata(address: str, pod: str) -> None:
    """The kernel's vmalloc use with a pod running stays small. With the default percpu first
    chunk, whose unit is 2 MiB (PMD-aligned), every further percpu chunk comes with a 4 MiB
    table of memory-cgroup owners (one pointer per 4 bytes of the unit); q35's devices and a
    pod's cgroups and namespaces fill the first chunk, so the guest lost 4 MiB. cmdline.txt's
    `percpu_alloc=page` makes the unit as small as the percpu data (~170 KiB)."""
    ran = onectl("-a", address, "exec", pod, "app", "--", "cat", "/proc/meminfo", timeout=120)
    assert ran.returncode == 0, ran
    used = re.search(r"^VmallocUsed:\s+(\d+) kB", ran.stdout, re.M)
    assert used, ran.stdout
    print(f"VmallocUsed with a pod running: {used[1]} kB")
    assert int(used[1]) < 2048, ran.stdout
