"""Inside the VM: the guest pulls over HTTPS, trusting a site CA given at boot.

One boot (direct: bzImage and the built initramfs, plus an appended cpio that adds the test CA at
/test-ca.pem, and `one.ca_file=/test-ca.pem`). Two HTTPS registries on the host's loopback, reached
through per-connection guestfwd splices under restrict=on: 10.0.2.100:5000 with a certificate for
that address (the pull succeeds), 10.0.2.101:5000 with one for another name (the pull fails at
once, naming the registry and the mismatch). Neither is named insecure: no plain HTTP at all.
"""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import pytest

from onebuild.cpio import NewcWriter
from onectl.machine import Machine, MachineConfig
from tests.fixtures.cli import onectl, pulled
from tests.fixtures.images.fixtures import Pushed, TlsRegistries
from tests.fixtures.images.splice import guestfwd
from tests.fixtures.vm import Artifacts, boot_machine

pytestmark = pytest.mark.vm

GOOD = "10.0.2.100:5000"
OTHER_NAME = "10.0.2.101:5000"
CA_IN_GUEST = "test-ca.pem"


def initrd_with_ca(artifacts: Artifacts, ca: Path, out: Path) -> Path:
    """The built initramfs followed by a cpio holding the CA: the kernel unpacks both."""
    extra = io.BytesIO()
    writer = NewcWriter(extra, mtime=1_700_000_000)
    writer.entry(CA_IN_GUEST, 0o100644, ca.read_bytes())
    writer.trailer()
    out.write_bytes(artifacts.initramfs.read_bytes() + gzip.compress(extra.getvalue(), mtime=0))
    return out


def test_guest_pulls_over_https_with_a_site_ca(artifacts: Artifacts, tmp_path: Path,
                                               tls_registries: TlsRegistries,
                                               busybox_image: Pushed,
                                               machines: list[Machine]) -> None:
    good, other = tls_registries.get("good"), tls_registries.get("other-name")
    config = MachineConfig(
        kernel=artifacts.bzimage, boot="direct",
        initrd=initrd_with_ca(artifacts, tls_registries.ca.cert, tmp_path / "initrd"),
        append=f"{artifacts.cmdline} one.ca_file=/{CA_IN_GUEST}",
        net="restricted", guestfwd=[guestfwd(GOOD, good.address),
                                    guestfwd(OTHER_NAME, other.address)],
        accel="tcg")
    machine = boot_machine(config, tmp_path)
    machines.append(machine)
    address = str(machine.address)

    ref = f"{GOOD}/{busybox_image.name}"
    image = pulled(address, ref)
    assert image["digest"] == busybox_image.digest and image["references"] == [ref]

    start = time.monotonic()
    refused = onectl("-a", address, "pull", f"{OTHER_NAME}/{busybox_image.name}", timeout=120)
    took = time.monotonic() - start
    print(f"certificate for another name refused in the guest after {took:.2f} s: "
          f"{refused.stderr.strip()}")
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "FAILED_PRECONDITION" in refused.stderr and f"registry {OTHER_NAME}" in refused.stderr
    assert "IP address mismatch" in refused.stderr
    assert took < 20  # one handshake under TCG, no retries
