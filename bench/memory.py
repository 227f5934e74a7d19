"""Memory benchmark: what a 128 MiB VM booted from the UKI has left at READY, after pulling the
busybox image and with a busybox pod running, and where the data directory went.

Boots the UKI under OVMF (the field route) with the guest reaching a loopback registry through a
guestfwd, pulls the fixture busybox image over the API, starts a pod of it (`sleep`), and reads
the init's own figures from the console (`phase ready`, `image ... ready` and `pod ... RUNNING`
lines: `rss ..., memory available ...`; older builds log only the first and the last).
Writes target/bench/memory.json. `--uki` measures another build (an older UKI, for before/after).

    .venv/bin/python -m bench.memory [--uki target/mvirt-one.efi] [--memory 128]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from onebuild import paths
from onebuild import uki as onebuild_uki
from onectl.machine import Machine, MachineConfig
from tests.fixtures.images import build
from tests.fixtures.images.registry import Registry
from tests.fixtures.images.splice import guestfwd

GUEST_REGISTRY = "10.0.2.100:5000"
MEMORY = re.compile(r"rss ([\d.]+) MiB, memory available ([\d.]+) of ([\d.]+) MiB")


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


def measure(uki: Path, memory_mib: int, work: Path) -> dict[str, object]:
    reg = Registry.start(work / "registry")
    try:
        layout = work / "oci"
        build.umoci_image(layout, "latest", [build.busybox_tree])
        build.skopeo_push(layout, "latest", reg.address, "busybox:latest")
        # The UKI boots with the command line it carries: one that names the test registry.
        kernel = work / "one.efi"
        onebuild_uki.add_to_cmdline(uki, f"one.insecure_registries={GUEST_REGISTRY}", kernel)
        config = MachineConfig(kernel=kernel, boot="uefi", memory_mib=memory_mib, accel="tcg",
                               net="restricted",
                               guestfwd=[guestfwd(GUEST_REGISTRY, reg.address)])
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
    return {"uki": str(uki), "uki_bytes": uki.stat().st_size, "memory_mib": memory_mib,
            "at_ready": ready, "after_busybox_pull": pulled, "busybox_pod_running": running,
            "data_directory_on": data[1] if data else "the initramfs root (ramfs)"}


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
