"""The host tools `onectl run` needs, found in one place, with what to install when one is missing.

onectl does not import the build package: vhost-device-vsock is looked for where `doit hosttools`
(onebuild/hosttools.py) unpacks it, but fetching it is the build's job, not the client's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from onectl.errors import OnectlError

VSOCK_DAEMON = "vhost-device-vsock"
VSOCK_DAEMON_ENV = "ONECTL_VHOST_DEVICE_VSOCK"  # an explicit binary, tried first
OVMF = Path("/usr/share/ovmf/OVMF.fd")


def _cache_dir() -> Path:
    # Same rule as onebuild.paths.cache_dir(): $MVIRT_ONE_CACHE or ~/.cache/mvirt-one.
    override = os.environ.get("MVIRT_ONE_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "mvirt-one"


def qemu() -> Path:
    found = shutil.which("qemu-system-x86_64")
    if found is None:
        raise OnectlError("qemu-system-x86_64 not found: install the Debian package "
                          "qemu-system-x86 (`make bootstrap` installs it)")
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
