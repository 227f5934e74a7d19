"""A pod inside the VM, end to end through `onectl` over hybrid vsock: create from the host's
registry, start, logs, exec, stop, delete, shutdown — at 128 MiB, with the shipped static crun.

The guest reaches the loopback registry only through a qemu guestfwd under restrict=on (see
test_image_vm.py). It boots the UKI under OVMF (boot="uefi"), as a user would, from a copy whose
built-in command line also names the insecure test registry (uki_with_cmdline): the UKI takes no
command line from outside.
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
from tests.fixtures.vm import Artifacts, boot_machine, uki_with_cmdline
from tests.fixtures.vm_pods import check_logs_and_exec, stop_and_remove, write_pod_file

pytestmark = pytest.mark.vm

GUEST_REGISTRY = "10.0.2.100:5000"


def test_pod_in_the_vm(artifacts: Artifacts, tmp_path: Path, image_proxy: Proxy,
                       busybox_image: Pushed, machines: list[Machine]) -> None:
    # The UKI at 128 MiB under OVMF, its command line naming the insecure test registry.
    kernel = uki_with_cmdline(artifacts, f"one.insecure_registries={GUEST_REGISTRY}",
                              tmp_path / "one.efi")
    config = MachineConfig(
        kernel=kernel, boot="uefi",
        net="restricted", guestfwd=[guestfwd(GUEST_REGISTRY, image_proxy.address)],
        accel="tcg", memory_mib=128)
    machine = boot_machine(config, tmp_path)
    machines.append(machine)
    a = str(machine.address)
    podfile = write_pod_file(tmp_path / "pod.json", "vmpod",
                             f"{GUEST_REGISTRY}/{busybox_image.name}")

    created = onectl("-a", a, "--rpc-timeout", "300", "pod", "create", "-f", str(podfile),
                     "-o", "json", timeout=400)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["state"] == "POD_STATE_CREATED", created.stdout
    started = onectl("-a", a, "pod", "start", "vmpod", "-o", "json", timeout=120)
    assert started.returncode == 0, started.stderr + machine.console_log.read_text()
    pod = json.loads(started.stdout)
    assert pod["state"] == "POD_STATE_RUNNING", pod
    assert pod["ip_address"] == "10.0.2.15", pod  # the VM's own DHCP address

    check_logs_and_exec(a, "vmpod")

    health = json.loads(onectl("-a", a, "-o", "json", "health").stdout)
    assert health["running_containers"] == 1, health
    rss = re.findall(r"pod vmpod RUNNING; rss ([\d.]+) MiB", machine.console_log.read_text())
    assert rss, machine.console_log.read_text()
    print(f"init RSS with one pod running: {rss[-1]} MiB")

    stop_and_remove(a, "vmpod")
    assert machine.stop(timeout=120) == 0
