"""Inside the VM: the guest's init pulls from the host's loopback registry over the API.

The guest reaches the registry (through the fixture proxy, which logs what was fetched) at
10.0.2.100:5000, a qemu guestfwd under restrict=on: the guest can reach that one host service
and nothing else. 10.0.2.100 is not loopback, so the pull over plain HTTP also proves
`one.insecure_registries` on the kernel command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onectl.machine import Machine, MachineConfig
from tests.fixtures.cli import onectl, pulled
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.splice import guestfwd
from tests.fixtures.vm import Artifacts, boot_machine

pytestmark = pytest.mark.vm

GUEST_REGISTRY = "10.0.2.100:5000"


def test_guest_pulls_from_the_host_registry(artifacts: Artifacts, tmp_path: Path,
                                            image_proxy: Proxy, busybox_image: Pushed,
                                            zstd_image: Pushed, machines: list[Machine]) -> None:
    config = MachineConfig(
        kernel=artifacts.bzimage, boot="direct", initrd=artifacts.initramfs,
        append=f"{artifacts.cmdline} one.insecure_registries={GUEST_REGISTRY}",
        net="restricted", guestfwd=[guestfwd(GUEST_REGISTRY, image_proxy.address)],
        accel="tcg")
    machine = boot_machine(config, tmp_path)
    machines.append(machine)
    address = str(machine.address)
    ref = f"{GUEST_REGISTRY}/{busybox_image.name}"

    image = pulled(address, ref)
    assert image["digest"] == busybox_image.digest and image["references"] == [ref]
    assert image["entrypoint"] == ["/bin/sh"] and image["architecture"] == "amd64"
    assert image_proxy.requests("GET", "blobs")  # the layers came over the guest's network

    image_proxy.log.clear()
    again = onectl("-a", address, "pull", ref, "-o", "json", timeout=300)
    assert again.returncode == 0, again.stderr
    assert image_proxy.requests("GET") == []  # a second pull transfers nothing

    listed = onectl("-a", address, "-o", "json", "images")
    assert listed.returncode == 0, listed.stderr
    assert [i["digest"] for i in json.loads(listed.stdout)["images"]] == [busybox_image.digest]
    bad = onectl("-a", address, "pull", "Bad/Reference")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr

    # zstd layers: the init's own decompression-only libzstd, read from the guest's /usr image.
    zstd_ref = f"{GUEST_REGISTRY}/{zstd_image.name}"
    assert pulled(address, zstd_ref)["digest"] == zstd_image.digest
