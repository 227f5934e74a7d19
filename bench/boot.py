"""Boot benchmark: our init against a busybox-static /init on the same kernel, in the same run.

Prints and writes target/bench/boot.json: qemu start -> first init line and -> ready (median of
N boots, the contenders booted in turn, TCG, virtio-rng, the balloon `onectl run` adds unless
--no-balloon), the ratio to the baseline, memory at ready, and the UKI's make-up.
Not a test: figures depend on the machine; only the ratios are comparable across machines.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import re
import shutil
import stat
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from onebuild import cpio, initramfs, paths, uki
from onectl.qemu import Vm, VmError, VmSpec

T = paths.TARGET
BASELINE_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "baseline init starting"
echo "baseline ready: $(/bin/busybox grep MemAvailable /proc/meminfo)"
/bin/busybox poweroff -f
"""
# The single static ELF route: PyInstaller's onefile bootloader and staticx's both fork and run
# Python as their child, so Python is never PID 1 that way; a busybox shim mounts what staticx
# needs (/proc, a tmpfs /tmp to unpack into) and runs it in local mode, which measures what the
# route costs in start time and RAM.
STATIC_SHIM = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "static route: shim starting"
/mvirt-one --data-dir /tmp/one --listen unix:/tmp/api.sock &
/bin/busybox sleep 600
"""
OURS = {"first": r"init \S+ starting as PID 1", "ready": r"phase ready"}
STATIC = {"first": r"static route: shim starting", "ready": r"phase ready"}
BASELINE = {"first": r"baseline init starting", "ready": r"baseline ready"}


def busybox_initramfs(work: Path, name: str, script: str, extra: dict[str, Path]) -> Path:
    tree = work / f"{name}.root"
    (tree / "bin").mkdir(parents=True)
    for d in ("proc", "tmp", "dev"):
        (tree / d).mkdir()
    shutil.copy("/bin/busybox", tree / "bin" / "busybox")
    for dest, src in extra.items():
        shutil.copy(src, tree / dest)
    (tree / "init").write_text(script)
    (tree / "init").chmod(0o755 | stat.S_IFREG)
    raw = io.BytesIO()
    cpio.write(raw, tree, mtime=0, devices=initramfs.DEVICES)
    out = work / f"{name}.cpio.gz"
    out.write_bytes(gzip.compress(raw.getvalue(), 9, mtime=0))
    return out


HANGS: list[str] = []


def boot_once(spec: VmSpec, marks: dict[str, str], work: Path, end: str) -> dict[str, float]:
    """One boot, retried when the kernel hangs before /init (seen under TCG on a loaded host:
    `tsc: Unable to calibrate against PIT`); hangs are counted in the results, not hidden."""
    for attempt in range(3):
        try:
            return _boot(spec, marks, work / f"try{attempt}", end)
        except VmError as e:
            if "timed out" not in str(e) or attempt == 2:
                raise
            HANGS.append(f"{work.name}: {str(e).splitlines()[0]}")
    raise AssertionError("unreachable")


def _boot(spec: VmSpec, marks: dict[str, str], work: Path, end: str) -> dict[str, float]:
    """`end` is how the VM stops: "powerdown" (ACPI), "exits" (by itself) or "kill"."""
    with Vm(spec, work) as vm:
        first, _ = vm.wait_for(marks["first"], 120)
        ready, m = vm.wait_for(marks["ready"] + ".*", 300)
        result = {"first_line_s": first, "ready_s": ready}
        mem = re.search(r"MemAvailable:\s+(\d+)|memory available ([\d.]+)", m.group(0))
        if mem:
            result["mem_available_mib"] = (int(mem.group(1)) / 1024 if mem.group(1)
                                           else float(mem.group(2)))
        rss = re.search(r"rss ([\d.]+) MiB", m.group(0))
        if rss:
            result["init_rss_mib"] = float(rss.group(1))
        if end == "powerdown":
            vm.qmp("system_powerdown")
        if end != "kill":
            vm.wait_exit(120)
    return result


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = set.intersection(*(set(r) for r in runs))
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in sorted(keys)}


def uki_makeup() -> dict[str, int]:
    """What the UKI is made of. The initrd is a small root plus /usr as two squashfs images (the
    boot's, and the lazy one of what the boot never reads); the parts of /usr are given as xz
    sizes wherever they are (a file moved to the lazy image counts at its /usr path)."""
    usr = initramfs.TREE / initramfs.USR
    lazy = initramfs.TREE / initramfs.LAZY

    def xz_size(prefixes: tuple[str, ...]) -> int:
        data = b"".join(p.read_bytes() for p in sorted(usr.rglob("*"))
                        if p.is_file() and not p.is_symlink()
                        and str(p.relative_to(lazy if lazy in p.parents else usr))
                        .startswith(prefixes))
        return len(lzma.compress(data, preset=9))

    return {
        "uki_bytes": (T / "mvirt-one.efi").stat().st_size,
        "kernel_bytes": (T / "bzImage").stat().st_size,
        "initrd_bytes": initramfs.CPIO_ZST.stat().st_size,
        "usr_squashfs_bytes": initramfs.USR_SQUASHFS.stat().st_size,
        "lazy_squashfs_bytes": initramfs.LAZY_SQUASHFS.stat().st_size,
        "usr_tree_bytes": sum(p.stat().st_size for p in usr.rglob("*")
                              if p.is_file() and not p.is_symlink()),
        "init_bundle_xz_bytes": xz_size(("lib/mvirt-one",)),
        "runtime_xz_bytes": xz_size(("bin",)),
        "system_libs_and_programs_xz_bytes": xz_size(("lib/x86_64-linux-gnu", "lib64", "sbin")),
        "static_elf_bytes": (T / "mvirt-one").stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5, help="boots per configuration")
    parser.add_argument("--memory", type=int, default=128, help="guest MiB")
    parser.add_argument("--no-balloon", action="store_true",
                        help="no virtio balloon (onectl run adds one for free page reporting)")
    args = parser.parse_args()
    results: dict[str, object] = {"boots_per_config": args.n, "memory_mib": args.memory,
                                  "accel": "tcg", "balloon": not args.no_balloon}
    cmdline = (T / "cmdline").read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_initrd = busybox_initramfs(work, "baseline", BASELINE_INIT, {})
        static_initrd = busybox_initramfs(work, "static", STATIC_SHIM,
                                          {"mvirt-one": T / "mvirt-one"})
        base_uki = work / "baseline.efi"
        parts = dict(uki.sections())
        parts[".initrd"] = base_initrd
        uki.assemble(parts, base_uki)
        configs: dict[str, Callable[[Path, Path | None], VmSpec]] = {
            "direct_microvm": lambda initrd, _uki: VmSpec(
                kernel=T / "bzImage", boot="direct", initrd=initrd, append=cmdline,
                machine="microvm", memory_mib=args.memory, balloon=not args.no_balloon),
            "uefi_q35": lambda _initrd, uki_file: VmSpec(kernel=uki_file or base_uki,
                                                         boot="uefi", memory_mib=args.memory,
                                                         balloon=not args.no_balloon),
        }
        for name, make in configs.items():
            # (label, spec, console marks, how it ends); booted in turn, one of each per round,
            # so the machine's drift over the minutes of a run (±0.3 s under TCG) falls on all.
            contenders = [
                ("baseline", make(base_initrd, base_uki), BASELINE, "exits"),
                ("ours", make(T / "initramfs.cpio.gz", T / "mvirt-one.efi"), OURS, "powerdown")]
            if name == "direct_microvm":
                contenders.append(("static_elf", make(static_initrd, None), STATIC, "kill"))
            runs: dict[str, list[dict[str, float]]] = {who: [] for who, *_ in contenders}
            for i in range(args.n):
                for who, spec, marks, end in contenders:
                    runs[who].append(boot_once(spec, marks, work / f"{name}-{who}-{i}", end=end))
            for who in runs:
                results[f"{name}_{who}"] = median_of(runs[who])
                print(name, who, results[f"{name}_{who}"], flush=True)
            ours = results[f"{name}_ours"]
            base = results[f"{name}_baseline"]
            assert isinstance(ours, dict) and isinstance(base, dict)
            results[f"{name}_ready_ratio"] = round(ours["ready_s"] / base["ready_s"], 2)
    results["sizes"] = uki_makeup()
    results["hung_boots_retried"] = HANGS
    out = T / "bench" / "boot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
