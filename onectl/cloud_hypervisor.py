"""The cloud-hypervisor command line equivalent to `onectl run` (printed, not run: users deploy on
cloud-hypervisor, which this project's CI cannot obtain).

cloud-hypervisor's `--vsock cid=N,socket=PATH` is the same hybrid vsock vhost-device-vsock gives
qemu here: the API is `vsock-uds:PATH:1024` and the guest's READY arrives on `PATH_1025` in both.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from onectl.machine import MachineConfig


def argv(config: MachineConfig, *, vsock_socket: Path, console_log: Path | None,
         tap: str) -> list[str]:
    """`console_log` None: serial console on the terminal (`--serial tty`)."""
    args = ["cloud-hypervisor", "--kernel", str(config.kernel)]
    if config.boot == "direct":
        if config.initrd is not None:
            args += ["--initramfs", str(config.initrd)]
        if config.append:
            args += ["--cmdline", config.append]
    args += ["--cpus", f"boot={config.cpus}", "--memory", f"size={config.memory_mib}M",
             "--vsock", f"cid={config.cid},socket={vsock_socket}"]
    if config.balloon:
        # Free page reporting, as qemu_argv.BALLOON: size is mandatory, 0 never inflates.
        args += ["--balloon", "size=0,free_page_reporting=on"]
    if config.data_disk is not None:
        args += ["--disk", f"path={config.data_disk}"]  # virtio-blk: the guest's /dev/vda
    if config.net != "none":
        # cloud-hypervisor has no user-mode network: the guest gets a tap device the host
        # bridges or routes (qemu's restrict=on has no equivalent either).
        args += ["--net", f"tap={tap}"]
    args += ["--serial", "tty" if console_log is None else f"file={console_log}",
             "--console", "off",
             # Entropy for the guest: CPython waits ~1 s for the pool under TCG without it.
             "--rng", "src=/dev/urandom"]
    return args


def command_line(config: MachineConfig, *, vsock_socket: Path, console_log: Path | None,
                 tap: str) -> str:
    return shlex.join(argv(config, vsock_socket=vsock_socket, console_log=console_log, tap=tap))
