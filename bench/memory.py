"""Memory benchmark: what a 128 MiB VM booted from the UKI has left at READY, after pulling the
busybox image and with a busybox pod running, and where the data directory went.

Boots the UKI under OVMF (the field route) with the guest reaching a loopback registry through a
guestfwd, pulls the fixture busybox image over the API, starts a pod of it (`sleep`), and reads
the init's own figures from the console (`phase ready`, `image ... ready` and `pod ... RUNNING`
lines: `rss ..., memory available ...`; older builds log only the first and the last).

The baseline, booted in the same run: the same UKI with its initrd replaced by busybox alone
(bench/boot.py's baseline guest), same VM (OVMF, q35, RAM, NIC), whose /init reads MemTotal and
MemAvailable and powers off. `against_baseline` gives each stage of ours against it: memory used
(MemTotal - MemAvailable) over the baseline's (`used_over_baseline`), MemAvailable over the
baseline's (`available_ratio`), and the MiB our init, its data directory, the image and the pod
take beyond what the kernel and a shell need (`cost_mib`).
Writes target/bench/memory.json. `--uki` measures another build (an older UKI, for before/after).

    .venv/bin/python -m bench.memory [--uki target/mvirt-one.efi] [--memory 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.boot import busybox_initramfs
from onebuild import inspect, paths
from onebuild import uki as onebuild_uki
from onectl.machine import Machine, MachineConfig
from onectl.qemu import Vm
from tests.fixtures.images import build
from tests.fixtures.images.registry import Registry
from tests.fixtures.images.splice import guestfwd

GUEST_REGISTRY = "10.0.2.100:5000"
MEMORY = re.compile(r"rss ([\d.]+) MiB, memory available ([\d.]+) of ([\d.]+) MiB")
BASELINE_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "baseline init starting"
echo "baseline ready:" $(/bin/busybox grep -E '^(MemTotal|MemAvailable):' /proc/meminfo)
/bin/busybox poweroff -f
"""
BASELINE_MEMORY = re.compile(r"baseline ready: MemTotal: (\d+) kB MemAvailable: (\d+) kB")


def _figures(line: str) -> dict[str, float]:
    m = MEMORY.search(line)
    if m is None:
        raise SystemExit(f"no memory figures in {line!r}")
    return {"rss_mib": float(m[1]), "available_mib": float(m[2]), "total_mib": float(m[3])}


def _line(console: Path, pattern: str) -> str:
    for line in console.read_text(errors="replace").splitlines():
        if re.search(pattern, line):
            return line
    raise SystemExit(f"no console line matching {pattern!r}")


def _config(kernel: Path, memory_mib: int, registry: str) -> MachineConfig:
    return MachineConfig(kernel=kernel, boot="uefi", memory_mib=memory_mib, accel="tcg",
                         net="restricted", guestfwd=[guestfwd(GUEST_REGISTRY, registry)])


def measure_baseline(uki: Path, memory_mib: int, work: Path) -> dict[str, float]:
    """MemTotal and MemAvailable of busybox as /init in `uki` (its kernel and command line),
    in the VM our init is measured in (without the vsock device, which it cannot use)."""
    initrd = busybox_initramfs(work, "baseline", BASELINE_INIT, {})
    data = uki.read_bytes()
    parts: dict[str, Path] = {}
    for section in inspect.uki_sections(uki):
        if section.name in onebuild_uki.sections():
            parts[section.name] = work / f"baseline{section.name}"
            parts[section.name].write_bytes(section.content(data))
    parts[".initrd"] = initrd
    base_uki = work / "baseline.efi"
    onebuild_uki.assemble({name: parts[name] for name in onebuild_uki.sections()}, base_uki)
    spec = dataclasses.replace(_config(base_uki, memory_mib, "127.0.0.1:9").vm_spec(work),
                               vhost_user_vsock=None)
    with Vm(spec, work / "baseline-vm") as vm:
        vm.wait_for(r"baseline init starting", 300)
        _, m = vm.wait_for(BASELINE_MEMORY.pattern, 120)
        vm.wait_exit(120)
    return {"total_mib": round(int(m[1]) / 1024, 1), "available_mib": round(int(m[2]) / 1024, 1)}


def against(ours: dict[str, float] | None, base: dict[str, float]) -> dict[str, float] | None:
    """Our figures at one stage against the baseline's (used = total - available)."""
    if ours is None:
        return None
    used, base_used = ours["total_mib"] - ours["available_mib"], base["total_mib"] - base[
        "available_mib"]
    return {"available_ratio": round(ours["available_mib"] / base["available_mib"], 3),
            "used_over_baseline": round(used / base_used, 2),
            "cost_mib": round(base["available_mib"] - ours["available_mib"], 1)}


def measure(uki: Path, memory_mib: int, work: Path) -> dict[str, object]:
    reg = Registry.start(work / "registry")
    try:
        layout = work / "oci"
        build.umoci_image(layout, "latest", [build.busybox_tree])
        build.skopeo_push(layout, "latest", reg.address, "busybox:latest")
        # The UKI boots with the command line it carries: one that names the test registry.
        kernel = work / "one.efi"
        onebuild_uki.add_to_cmdline(uki, f"one.insecure_registries={GUEST_REGISTRY}", kernel)
        config = _config(kernel, memory_mib, reg.address)
        with Machine(config, work / "vm") as machine:
            machine.wait_ready(300)
            pull = subprocess.run(
                [sys.executable, "-m", "onectl", "-a", str(machine.address), "pull",
                 f"{GUEST_REGISTRY}/busybox:latest"], capture_output=True, text=True, timeout=300,
                cwd=paths.ROOT)
            if pull.returncode != 0:
                raise SystemExit(f"pull failed: {pull.stderr}")
            pod = work / "pod.json"
            pod.write_text(json.dumps({"id": "bench", "containers": [{
                "id": "c", "image": f"{GUEST_REGISTRY}/busybox:latest",
                "command": ["/bin/busybox", "sleep", "600"]}]}))
            for verb in (["create", "-f", str(pod)], ["start", "bench"]):
                done = subprocess.run(
                    [sys.executable, "-m", "onectl", "-a", str(machine.address), "--rpc-timeout",
                     "300", "pod", *verb], capture_output=True, text=True, timeout=360,
                    cwd=paths.ROOT)
                if done.returncode != 0:
                    raise SystemExit(f"pod {verb[0]} failed: {done.stdout}{done.stderr}\n"
                                     + machine.console_log.read_text(errors="replace")[-3000:])
            console = machine.console_log
            ready = _figures(_line(console, r"phase ready"))
            try:
                pulled: dict[str, float] | None = _figures(_line(console, r"image \S+ ready"))
            except SystemExit:
                pulled = None
            running = _figures(_line(console, r"pod bench RUNNING"))
            data = re.search(r"data directory \S+ on (.*)", console.read_text(errors="replace"))
    finally:
        reg.stop()
    baseline = measure_baseline(uki, memory_mib, work)
    return {"uki": str(uki), "uki_bytes": uki.stat().st_size, "memory_mib": memory_mib,
            "at_ready": ready, "after_busybox_pull": pulled, "busybox_pod_running": running,
            "data_directory_on": data[1] if data else "the initramfs root (ramfs)",
            "baseline": {"what": "busybox as /init in the same UKI and VM, same run",
                         **baseline},
            "against_baseline": {"at_ready": against(ready, baseline),
                                 "after_busybox_pull": against(pulled, baseline),
                                 "busybox_pod_running": against(running, baseline)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uki", type=Path, default=paths.TARGET / "mvirt-one.efi")
    parser.add_argument("--memory", type=int, default=128, help="guest RAM in MiB")
    parser.add_argument("--out", type=Path, default=paths.TARGET / "bench" / "memory.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        result = measure(args.uki.resolve(), args.memory, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
