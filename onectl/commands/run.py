"""`onectl run`: boot a UKI (or a bzImage directly) in qemu with the API on hybrid vsock, wait for
READY, print the API address, and stop the VM cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

from onectl import cloud_hypervisor, disk
from onectl.commands._common import add_command, non_negative_int, positive_float, wants_json
from onectl.errors import Exit, OnectlError, UsageError
from onectl.machine import Machine, MachineConfig
from onectl.output import print_fields

# Under TCG on two busy cores OVMF alone takes ~4 s and a boot ~10 s; the wait ends on READY.
READY_TIMEOUT = 240.0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = add_command(
        sub, common, "run", handle, help="boot a UKI in qemu and serve its API on hybrid vsock",
        description="Boot UKI (q35 + OVMF) or --kernel BZIMAGE (microvm, direct boot) in qemu "
        "(TCG unless real KVM works) with vsock through vhost-device-vsock; wait for the "
        "guest's READY, print the API address, and run until the VM powers off. Ctrl-C or "
        "SIGTERM shuts it down (API Shutdown, then the ACPI power button, then kill).")
    p.add_argument("uki", nargs="?", type=Path, metavar="UKI", help="the UKI to boot (.efi)")
    p.add_argument("--kernel", type=Path, metavar="BZIMAGE",
                   help="boot this kernel directly instead of a UKI (microvm)")
    p.add_argument("--initrd", type=Path, help="initramfs for --kernel")
    p.add_argument("--append", metavar="CMDLINE", help="kernel command line for --kernel")
    p.add_argument("--memory", type=non_negative_int, default=128, metavar="MIB",
                   help="guest memory in MiB (default 128)")
    p.add_argument("--cpus", type=non_negative_int, default=1, help="vCPUs (default 1)")
    p.add_argument("--net", choices=("none", "user", "restricted"), default="user",
                   help="qemu user networking: user (DHCP with router and DNS, default), "
                   "restricted (restrict=on: no traffic leaves the host), none")
    p.add_argument("--data-disk", type=disk.parse, metavar="PATH[:SIZE]",
                   help="attach a raw image as the guest's /dev/vda (virtio-blk) for images and "
                   "pods that outlive the VM; a missing one is created sparse and blank (SIZE "
                   f"like 2G or 512M, default {disk.human(disk.DEFAULT_SIZE)}; the guest formats "
                   "it), also with --print-cloud-hypervisor; an existing one is never resized")
    p.add_argument("--no-balloon", dest="balloon", action="store_false",
                   help="no virtio-balloon free page reporting: memory the guest frees stays "
                   "on the host for the VM's life")
    p.add_argument("--cid", type=non_negative_int, default=3, help="guest vsock CID (default 3)")
    p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto",
                   help="auto: KVM only where kvm_intel/kvm_amd are loaded, else TCG")
    p.add_argument("--console", action="store_true",
                   help="show the serial console on the terminal (always in RUN_DIR/console.log)")
    p.add_argument("--run-dir", type=Path, metavar="DIR",
                   help="where sockets and logs go (default: a new temporary directory, "
                   "removed after a clean stop)")
    p.add_argument("--ready-timeout", type=positive_float, default=READY_TIMEOUT,
                   metavar="SECONDS", help=f"wait this long for READY (default {READY_TIMEOUT:g})")
    p.add_argument("--stop-timeout", type=positive_float, default=60.0, metavar="SECONDS",
                   help="wait this long for each clean-stop step before the next (default 60)")
    p.add_argument("--print-cloud-hypervisor", action="store_true",
                   help="print the equivalent cloud-hypervisor command line and exit")
    p.add_argument("--tap", default="tap0",
                   help="tap device named in the printed cloud-hypervisor --net (default tap0)")


def config_from(args: argparse.Namespace) -> MachineConfig:
    if (args.uki is None) == (args.kernel is None):
        raise UsageError("run needs a UKI or --kernel BZIMAGE (one of them)")
    if args.uki is None and args.initrd is None:
        raise UsageError("--kernel needs --initrd (the initramfs holding the init)")
    if args.uki is not None and (args.initrd or args.append):
        raise UsageError("--initrd/--append go with --kernel; a UKI carries its own")
    if args.memory < 64 or args.cpus < 1:
        raise UsageError("--memory must be at least 64 MiB and --cpus at least 1")
    kernel = args.uki if args.uki is not None else args.kernel
    return MachineConfig(kernel=kernel.absolute(), boot="uefi" if args.uki else "direct",
                         initrd=args.initrd.absolute() if args.initrd else None,
                         append=args.append, memory_mib=args.memory, cpus=args.cpus,
                         net=args.net, cid=args.cid, accel=args.accel, console=args.console,
                         data_disk=args.data_disk.path if args.data_disk else None,
                         balloon=args.balloon)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: a clean stop."""


def _raise_terminated(signum: int, frame: types.FrameType | None) -> None:
    raise _Terminated()


def _say(text: str) -> None:
    print(f"onectl: {text}", file=sys.stderr, flush=True)


def handle(args: argparse.Namespace) -> int:
    config = config_from(args)
    if args.data_disk and disk.ensure(args.data_disk):
        _say(f"created data disk {args.data_disk.path} "
             f"({disk.human(args.data_disk.size or disk.DEFAULT_SIZE)}, sparse and blank: the "
             "guest formats it)")
    if args.print_cloud_hypervisor:
        run_dir = (args.run_dir or Path(tempfile.gettempdir()) / "onectl-run").absolute()
        print(cloud_hypervisor.command_line(
            config, vsock_socket=run_dir / "vm.vsock",
            console_log=None if args.console else run_dir / "console.log", tap=args.tap))
        return 0
    own_dir = args.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="onectl-run-")) if own_dir else args.run_dir
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    machine = Machine(config, run_dir, say=_say)
    code: int | None = None
    try:
        machine.start()
        try:
            seconds = machine.wait_ready(args.ready_timeout)
        except OnectlError:
            if not args.console:  # the user has not seen the console: show why it failed
                for line in machine.vm.tail(15).splitlines() if machine.vm else []:
                    print(f"console: {line}", file=sys.stderr)
            raise
        _announce(args, machine, seconds)
        code = machine.wait_exit()
        _say(f"the VM powered off (qemu exit code {code})")
    except KeyboardInterrupt:
        code = machine.stop(timeout=args.stop_timeout)
        _say(f"VM stopped (qemu exit code {code})")
    finally:
        machine.stop(timeout=args.stop_timeout)  # no-op when already stopped; stops the daemon
        booted = machine.console_log.exists()
        if own_dir and (code == 0 or not booted):
            shutil.rmtree(run_dir, ignore_errors=True)
        elif booted and code != 0:
            _say(f"logs kept in {run_dir}")
    if code != 0:
        raise OnectlError(f"qemu exited with {code}", Exit.LOCAL)
    return 0


def _announce(args: argparse.Namespace, machine: Machine, seconds: float) -> None:
    if wants_json(args):
        # One line: `run` keeps going after it, so a script reads exactly one line for it.
        print(json.dumps({"address": str(machine.address), "ready_seconds": round(seconds, 3),
                          "run_dir": str(machine.run_dir),
                          "console_log": str(machine.console_log)}))
    else:
        print_fields([("API address", machine.address),
                      ("READY after", f"{seconds:.2f} s (qemu start → READY on the host)"),
                      ("console", "this terminal" if args.console else machine.console_log),
                      ("run dir", machine.run_dir)])
        print("Ctrl-C or SIGTERM stops the VM.", flush=True)
    sys.stdout.flush()
