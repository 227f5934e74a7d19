"""The data directory in a 128 MiB VM: without a disk a size-limited tmpfs that fails large pulls
and compression bombs cleanly; with a disk (blank, formatted by the guest) a Debian-sized image
pulls and runs, and after a reboot on the same disk it is used again with nothing transferred.

The guest reaches the registry through the fixture proxy (which logs every request) at
10.0.2.100:5000, a qemu guestfwd under restrict=on.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from onectl.machine import Machine, MachineConfig
from tests.fixtures.cli import onectl
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.splice import guestfwd
from tests.fixtures.vm import Artifacts, boot_machine

pytestmark = pytest.mark.vm

GUEST_REGISTRY = "10.0.2.100:5000"


def _config(artifacts: Artifacts, proxy: Proxy, disk: Path | None) -> MachineConfig:
    return MachineConfig(
        kernel=artifacts.bzimage, boot="direct", initrd=artifacts.initramfs,
        append=f"{artifacts.cmdline} one.insecure_registries={GUEST_REGISTRY}",
        net="restricted", guestfwd=[guestfwd(GUEST_REGISTRY, proxy.address)],
        accel="tcg", data_disk=disk)


def _console(machine: Machine) -> str:
    return machine.console_log.read_text(errors="replace")


def _healthy(address: str) -> None:
    health = onectl("-a", address, "-o", "json", "health")
    assert health.returncode == 0 and json.loads(health.stdout)["healthy"], health.stderr


def test_without_a_disk_large_pulls_fail_cleanly(artifacts: Artifacts, tmp_path: Path,
                                                 image_proxy: Proxy, debian_image: Pushed,
                                                 bomb_image: Pushed, busybox_image: Pushed,
                                                 machines: list[Machine]) -> None:
    machine = boot_machine(_config(artifacts, image_proxy, None), tmp_path)
    machines.append(machine)
    address = str(machine.address)
    assert re.search(r"data directory \S+ on a tmpfs of \d+ MiB", _console(machine))

    debian = onectl("-a", address, "pull", f"{GUEST_REGISTRY}/{debian_image.name}", timeout=600)
    assert debian.returncode != 0 and "RESOURCE_EXHAUSTED" in debian.stderr, debian.stderr
    assert "needs at least" in debian.stderr
    assert not image_proxy.requests("GET", "blobs")  # refused before any layer was fetched
    bomb = onectl("-a", address, "pull", f"{GUEST_REGISTRY}/{bomb_image.name}", timeout=600)
    assert bomb.returncode != 0 and "RESOURCE_EXHAUSTED" in bomb.stderr, bomb.stderr
    assert "ran out of space" in bomb.stderr
    _healthy(address)
    small = onectl("-a", address, "pull", f"{GUEST_REGISTRY}/{busybox_image.name}", timeout=600)
    assert small.returncode == 0, small.stderr
    assert "Kernel panic" not in _console(machine) and "Out of memory" not in _console(machine)


def test_data_disk_survives_a_reboot(artifacts: Artifacts, tmp_path: Path, image_proxy: Proxy,
                                     debian_image: Pushed, busybox_image: Pushed,
                                     machines: list[Machine]) -> None:
    disk = tmp_path / "data.img"
    with open(disk, "wb") as f:
        f.truncate(2 << 30)  # blank and sparse, as `onectl run --data-disk` makes it
    ref = f"{GUEST_REGISTRY}/{debian_image.name}"
    pod = tmp_path / "pod.json"
    pod.write_text(json.dumps({"id": "deb", "containers": [{
        "id": "c", "image": ref,
        "command": ["/bin/sh", "-c", "cat /etc/debian_version; sleep 600"]}]}))

    first = boot_machine(_config(artifacts, image_proxy, disk), tmp_path / "first")
    machines.append(first)
    address = str(first.address)
    assert "formatting it ext4" in _console(first)
    assert re.search(r"data directory \S+ on /dev/vda \(ext4\)", _console(first))
    created = onectl("-a", address, "--rpc-timeout", "900", "pod", "create", "-f", str(pod),
                     timeout=960)
    assert created.returncode == 0, created.stderr
    assert image_proxy.requests("GET", "blobs")
    started = onectl("-a", address, "pod", "start", "deb", timeout=120)
    assert started.returncode == 0, started.stderr
    logs = onectl("-a", address, "logs", "deb", timeout=60)
    assert re.search(r"^12\.", logs.stdout, re.M), logs.stdout + logs.stderr
    # The pod is left running: shutdown stops it, syncs and unmounts the disk.
    assert first.stop(timeout=120) == 0

    image_proxy.log.clear()
    second = boot_machine(_config(artifacts, image_proxy, disk), tmp_path / "second")
    machines.append(second)
    address = str(second.address)
    assert "formatting" not in _console(second)
    listed = onectl("-a", address, "-o", "json", "images")
    assert [i["digest"] for i in json.loads(listed.stdout)["images"]] == [debian_image.digest]
    # The same pod id again: what the last boot left is not taken for a live pod.
    again = onectl("-a", address, "--rpc-timeout", "300", "pod", "create", "-f", str(pod),
                   timeout=360)
    assert again.returncode == 0, again.stderr
    assert onectl("-a", address, "pod", "start", "deb", timeout=120).returncode == 0
    assert image_proxy.requests("GET") == []  # nothing transferred
    _healthy(address)
    # A container fills the disk: it stops at the blocks kept for the init, whose own writes
    # (an image pulled: blobs, rootfs, metadata) go on; a new container needs writable space of
    # its own, so it waits for the filler's to be freed.
    fill = tmp_path / "fill.json"
    fill.write_text(json.dumps({"id": "fill", "containers": [{
        "id": "c", "image": ref, "command": ["/bin/sh", "-c",
                                             "dd if=/dev/zero of=/fill bs=1M; echo full"]}]}))
    filled = onectl("-a", address, "pod", "create", "-f", str(fill), "--start", timeout=120)
    assert filled.returncode == 0, filled.stderr
    deadline = time.monotonic() + 600
    while "full" not in (out := onectl("-a", address, "logs", "fill", timeout=60)).stdout:
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(2)
    assert "No space left" in out.stdout + out.stderr, out
    pulled = onectl("-a", address, "pull", f"{GUEST_REGISTRY}/{busybox_image.name}", timeout=600)
    assert pulled.returncode == 0, pulled.stderr
    assert onectl("-a", address, "pod", "rm", "-f", "fill", timeout=120).returncode == 0
    after = tmp_path / "after.json"
    after.write_text(json.dumps({"id": "after", "containers": [{
        "id": "c", "image": ref, "command": ["/bin/sh", "-c", "echo still room"]}]}))
    made = onectl("-a", address, "pod", "create", "-f", str(after), "--start", timeout=120)
    assert made.returncode == 0, made.stderr
    deadline = time.monotonic() + 120
    while "still room" not in onectl("-a", address, "logs", "after", timeout=60).stdout:
        assert time.monotonic() < deadline
        time.sleep(1)
    _healthy(address)
    assert os.stat(disk).st_size == 2 << 30
