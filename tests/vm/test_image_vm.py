"""Inside the VM: the guest's init pulls from the host's loopback registry over the API.

The guest reaches the registry (through the fixture proxy, which logs what was fetched) at
10.0.2.100:5000, a qemu guestfwd under restrict=on: the guest can reach that one host service
and nothing else. 10.0.2.100 is not loopback, so the pull over plain HTTP also proves
`one.insecure_registries` on the kernel command line.
"""

# The fixtures are imported from tests/fixtures/images; pytest passes them by name.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onectl.machine import Machine, MachineConfig
from tests.conftest import Artifacts
from tests.fixtures.images.fixtures import (  # noqa: F401 - pytest fixtures
    Pushed,
    _proxy,
    busybox_image,
    image_proxy,
    image_registry,
    oci_dir,
)
from tests.fixtures.images.proxy import Proxy
from tests.vm.test_api_vm import _boot, _onectl, machines  # noqa: F401 - a fixture

pytestmark = pytest.mark.vm

GUEST_REGISTRY = "10.0.2.100:5000"


def test_guest_pulls_from_the_host_registry(artifacts: Artifacts, tmp_path: Path,
                                            image_proxy: Proxy, busybox_image: Pushed,
                                            machines: list[Machine]) -> None:
    config = MachineConfig(
        kernel=artifacts.bzimage, boot="direct", initrd=artifacts.initramfs,
        append=f"{artifacts.cmdline} one.insecure_registries={GUEST_REGISTRY}",
        net="restricted", guestfwd=[f"tcp:{GUEST_REGISTRY}-tcp:{image_proxy.address}"],
        accel="tcg")
    machine = _boot(config, tmp_path)
    machines.append(machine)
    address = str(machine.address)
    ref = f"{GUEST_REGISTRY}/{busybox_image.name}"

    pulled = _onectl("-a", address, "pull", ref, "-o", "json", timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    image = json.loads(pulled.stdout)
    assert image["digest"] == busybox_image.digest and image["references"] == [ref]
    assert image["entrypoint"] == ["/bin/sh"] and image["architecture"] == "amd64"
    assert image_proxy.requests("GET", "blobs")  # the layers came over the guest's network

    image_proxy.log.clear()
    again = _onectl("-a", address, "pull", ref, "-o", "json", timeout=300)
    assert again.returncode == 0, again.stderr
    assert image_proxy.requests("GET") == []  # a second pull transfers nothing

    listed = _onectl("-a", address, "-o", "json", "images")
    assert listed.returncode == 0, listed.stderr
    assert [i["digest"] for i in json.loads(listed.stdout)["images"]] == [busybox_image.digest]
    bad = _onectl("-a", address, "pull", "Bad/Reference")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
