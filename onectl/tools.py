"""The host `onectl run` boots on, resolved in one place: qemu, the UEFI firmware, the vsock
daemon, whether real KVM works and the TSC frequency, each with what to install when it is missing.

`qemu()` and `ovmf()` are the one look-up of qemu and OVMF for everything that boots a VM (the
VM tests and the boot benchmark included). onectl does not import the build package:
vhost-device-vsock is looked for where `doit hosttools` (onebuild/hosttools.py) unpacks it, but
fetching it is the build's job, not the client's.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from onectl.errors import OnectlError

QEMU = "qemu-system-x86_64"
OVMF = Path("/usr/share/ovmf/OVMF.fd")
VSOCK_DAEMON = "vhost-device-vsock"
VSOCK_DAEMON_ENV = "ONECTL_VHOST_DEVICE_VSOCK"  # an explicit binary, tried first


def _cache_dir() -> Path:
    # Same rule as onebuild.paths.cache_dir(): $MVIRT_ONE_CACHE or ~/.cache/mvirt-one.
    override = os.environ.get("MVIRT_ONE_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "mvirt-one"


def qemu() -> Path:
    found = shutil.which(QEMU)
    if found is None:
        raise OnectlError(f"{QEMU} not found: install the Debian package qemu-system-x86 "
                          "(`make bootstrap` installs it)")
    return Path(found)


def ovmf() -> Path:
    if not OVMF.is_file():
        raise OnectlError(f"{OVMF} not found (UEFI firmware to boot a UKI): install the Debian "
                          "package ovmf (`make bootstrap` installs it), or boot a bzImage "
                          "directly with --kernel/--initrd/--append")
    return OVMF


def vhost_device_vsock() -> Path:
    explicit = os.environ.get(VSOCK_DAEMON_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise OnectlError(f"${VSOCK_DAEMON_ENV}={explicit} is not an executable")
        return Path(explicit)
    on_path = shutil.which(VSOCK_DAEMON)
    if on_path:
        return Path(on_path)
    cached = sorted(_cache_dir().glob(f"tools/{VSOCK_DAEMON}-*/usr/bin/{VSOCK_DAEMON}"))
    if cached:
        return cached[-1]
    raise OnectlError(f"{VSOCK_DAEMON} not found (on PATH, in ${VSOCK_DAEMON_ENV} or in "
                      f"{_cache_dir() / 'tools'}): run `doit hosttools`, which fetches the "
                      f"Debian package {VSOCK_DAEMON} from sid, or install it from Debian "
                      "trixie/sid")


def kvm_usable() -> bool:
    """Real KVM only: /dev/kvm exists on hosts where it is an emulation (kvm_pvm) that cannot run
    a guest at useful speed, so require the hardware modules to be loaded."""
    if not os.path.exists("/dev/kvm"):
        return False
    try:
        modules = Path("/proc/modules").read_text()
    except OSError:
        return False
    return any(line.startswith(("kvm_intel ", "kvm_amd ")) for line in modules.splitlines())


def tsc_khz() -> int | None:
    """The host's TSC frequency in kHz, from /proc/cpuinfo (None if it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return int(float(line.split(":", 1)[1]) * 1000)
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class Host:
    """What a qemu command line depends on besides the VM's own spec."""

    qemu: Path
    ovmf: Path | None  # None: not looked for (a direct boot needs no firmware)
    kvm: bool  # real KVM works
    tsc_khz: int | None


def probe_host(*, firmware: bool) -> Host:
    """Look the host up once; raises OnectlError naming the package when qemu (or, with
    `firmware`, OVMF) is missing."""
    return Host(qemu=qemu(), ovmf=ovmf() if firmware else None, kvm=kvm_usable(),
                tsc_khz=tsc_khz())
