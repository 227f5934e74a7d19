"""Density benchmark: the host RAM each VM holds, ours against a busybox /init guest on the same
kernel, N of each booted side by side in the same run.

Ours: the UKI under OVMF as `onectl run` boots it (q35, memfd memory backend, the balloon with free
page reporting unless --no-balloon), with a busybox pod running (`sleep`), pulled from a loopback
registry through a guestfwd. The baseline: the same kernel and firmware with a busybox initrd
whose /init only mounts what it needs, in the same memfd backend with the same balloon.

Per VM, from qemu's /proc/PID/status on the host: RssShmem (the guest RAM the host holds) and
VmRSS (all of qemu), at READY (ours: also with the pod running), after IDLE seconds idle, at the
peak while a container (the baseline: its /init) holds ALLOC bytes in a tmpfs, AFTER seconds after
it freed them; and how long the RssShmem took to come back to within 5 MiB of the idle figure.
Medians over the N VMs of each kind, and ours / baseline. Writes target/bench/density.json.
Not a test: figures depend on the machine and its load (TCG).

    .venv/bin/python -m bench.density [-n 4] [--memory 128] [--no-balloon]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from bench.boot import busybox_initramfs
from init.system.meminfo import REPORTING_ORDER, REPORTING_ORDER_PARAM
from onebuild import paths, uki
from onectl.machine import Machine, MachineConfig
from onectl.qemu import Vm, VmSpec
from onectl.relay import HybridVsockRelay
from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.hostmem import status_kib
from tests.fixtures.images import build
from tests.fixtures.images.registry import Registry
from tests.fixtures.images.splice import guestfwd

T = paths.TARGET
GUEST_REGISTRY = "10.0.2.100:5000"
IMAGE = f"{GUEST_REGISTRY}/busybox:latest"
CALL = 600.0
RETURNED_WITHIN_MIB = 5.0
POLL = 0.5

BASELINE_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mkdir -p /sys
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t devtmpfs devtmpfs /dev
# The kernel setting our init makes (init/system/meminfo.py), so both report alike.
[ -e {param} ] && echo {order} > {param}
echo "baseline ready"
/bin/busybox sleep {idle}
echo "baseline idle"
# A failure ends PID 1: the kernel panics, qemu exits and the benchmark says so.
/bin/busybox head -c {alloc} /dev/zero > /tmp/x || exit 1
echo "baseline allocated"
/bin/busybox sleep 5
/bin/busybox rm /tmp/x
echo "baseline freed"
exec /bin/busybox sleep 1000000
"""


def sample(pid: int) -> dict[str, float]:
    kib = status_kib(pid)
    return {"shmem_mib": round(kib["RssShmem"] / 1024, 1),
            "rss_mib": round(kib["VmRSS"] / 1024, 1)}


def after_free(pid: int, freed_at: float, idle_shmem: float, after: float,
               timeout: float) -> dict[str, object]:
    """The figures AFTER seconds after the free, and when RssShmem came back to within
    RETURNED_WITHIN_MIB of the idle figure (None: not within `timeout`)."""
    returned: float | None = None
    figures: dict[str, float] | None = None
    while True:
        now = time.monotonic()
        current = sample(pid)
        if returned is None and current["shmem_mib"] <= idle_shmem + RETURNED_WITHIN_MIB:
            returned = round(now - freed_at, 1)
        if figures is None and now >= freed_at + after:
            figures = current
        if figures is not None and (returned is not None or now >= freed_at + timeout):
            return {"after_free": figures, "returned_s": returned}
        time.sleep(POLL)


@contextmanager
def _stub(machine: Machine) -> Iterator[one_pb2_grpc.OneServiceStub]:
    with HybridVsockRelay(machine.vsock_socket, 1024, connect_timeout=30) as relay, \
            grpc.insecure_channel(relay.target) as channel:
        yield one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]


def _start_pod(stub: one_pb2_grpc.OneServiceStub, pod_id: str, script: str) -> None:
    container = one_pb2.ContainerSpec(id="c", image=IMAGE,
                                      command=["/bin/busybox", "sh", "-c", script])
    stub.CreatePod(one_pb2.CreatePodRequest(id=pod_id, containers=[container]), timeout=CALL)
    stub.StartPod(one_pb2.StartPodRequest(id=pod_id), timeout=CALL)


def run_ours(kernel: Path, registry: str, args: argparse.Namespace,
             work: Path) -> dict[str, object]:
    config = MachineConfig(kernel=kernel, boot="uefi", memory_mib=args.memory, accel="tcg",
                           net="restricted", guestfwd=[guestfwd(GUEST_REGISTRY, registry)],
                           balloon=not args.no_balloon)
    with Machine(config, work) as machine:
        ready_s = machine.wait_ready(CALL)
        assert machine.vm is not None and machine.vm.proc is not None
        pid = machine.vm.proc.pid
        out: dict[str, object] = {"ready_s": round(ready_s, 1), "ready": sample(pid)}
        with _stub(machine) as stub:
            _start_pod(stub, "bench", "exec /bin/busybox sleep 100000")
            out["pod_running"] = sample(pid)
            time.sleep(args.idle)
            out["idle"] = idle = sample(pid)
            _start_pod(stub, "alloc", f"/bin/busybox head -c {args.alloc} /dev/zero > "
                       "/dev/shm/x && /bin/busybox sleep 5 && /bin/busybox rm /dev/shm/x")
            peak = idle
            while stub.GetPod(one_pb2.GetPodRequest(id="alloc"),
                              timeout=CALL).state != one_pb2.POD_STATE_STOPPED:
                now = sample(pid)
                peak = now if now["shmem_mib"] > peak["shmem_mib"] else peak
                time.sleep(POLL)
            freed_at = time.monotonic()
            out["peak"] = peak
            stub.DeletePod(one_pb2.DeletePodRequest(id="alloc"), timeout=CALL)
            out.update(after_free(pid, freed_at, idle["shmem_mib"], args.after,
                                  args.return_timeout))
    return out


def run_baseline(kernel: Path, args: argparse.Namespace, work: Path) -> dict[str, object]:
    memfd = ["-object", f"memory-backend-memfd,id=mem,size={args.memory}M,share=on",
             "-machine", "memory-backend=mem"]
    spec = VmSpec(kernel=kernel, boot="uefi", memory_mib=args.memory, accel="tcg",
                  balloon=not args.no_balloon, extra=memfd)
    with Vm(spec, work) as vm:
        assert vm.proc is not None
        pid = vm.proc.pid
        ready_s, _ = vm.wait_for("baseline ready", CALL)
        out: dict[str, object] = {"ready_s": round(ready_s, 1), "ready": sample(pid)}
        vm.wait_for("baseline idle", CALL)
        out["idle"] = idle = sample(pid)
        vm.wait_for("baseline allocated", CALL)
        out["peak"] = sample(pid)
        vm.wait_for("baseline freed", CALL)
        out.update(after_free(pid, time.monotonic(), idle["shmem_mib"], args.after,
                              args.return_timeout))
    return out


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        if isinstance(value, dict):
            out[key] = {k: round(statistics.median(v[k] for v in values), 1) for k in value}
        elif all(isinstance(v, (int, float)) for v in values):
            out[key] = round(statistics.median(values), 1)
        else:
            out[key] = values  # a return that did not happen in one of them: each shown
    return out


def ratios(ours: dict[str, object], base: dict[str, object]) -> dict[str, float]:
    out = {}
    for stage in ("ready", "idle", "after_free"):
        o, b = ours[stage], base[stage]
        assert isinstance(o, dict) and isinstance(b, dict)
        for k in ("shmem_mib", "rss_mib"):
            out[f"{stage}_{k}"] = round(o[k] / b[k], 2)
    return out


def table(ours: dict[str, object], base: dict[str, object], r: dict[str, float]) -> str:
    def cell(fig: dict[str, object], stage: str) -> str:
        f = fig.get(stage)
        return f"{f['shmem_mib']} / {f['rss_mib']}" if isinstance(f, dict) else "-"

    rows = ["| per VM (median), MiB: RssShmem / qemu VmRSS | ours | busybox | ratio (RssShmem) |",
            "|---|---|---|---|"]
    for stage, label in (("ready", "at READY"), ("pod_running", "busybox pod running"),
                         ("idle", "idle (pod running)"), ("peak", "container holds ALLOC"),
                         ("after_free", "AFTER s after it freed them")):
        ratio = r.get(f"{stage}_shmem_mib")
        rows.append(f"| {label} | {cell(ours, stage)} | {cell(base, stage)} | "
                    f"{'' if ratio is None else f'{ratio}x'} |")
    rows.append(f"| back within {RETURNED_WITHIN_MIB:g} MiB of idle after (s) | "
                f"{ours['returned_s']} | {base['returned_s']} | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=4, help="VMs of each kind (default 4)")
    parser.add_argument("--memory", type=int, default=128, help="guest MiB (default 128)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle (default 30)")
    parser.add_argument("--alloc", type=int, default=40 << 20,
                        help="bytes a container allocates and frees (default 40 MiB)")
    parser.add_argument("--after", type=float, default=10.0,
                        help="seconds after the free for its figure (default 10)")
    parser.add_argument("--return-timeout", type=float, default=120.0,
                        help="seconds to wait for the freed memory to come back")
    parser.add_argument("--no-balloon", action="store_true",
                        help="no virtio balloon in either kind of VM (the figures before it)")
    parser.add_argument("--uki", type=Path, default=T / "mvirt-one.efi")
    parser.add_argument("--out", type=Path, default=T / "bench" / "density.json")
    args = parser.parse_args()
    results: dict[str, object] = {
        "vms_per_kind": args.n, "memory_mib": args.memory, "accel": "tcg",
        "balloon": not args.no_balloon, "idle_s": args.idle, "alloc_bytes": args.alloc,
        "after_s": args.after}
    with tempfile.TemporaryDirectory(prefix="bench-density-") as tmp:
        work = Path(tmp)
        reg = Registry.start(work / "registry")
        try:
            layout = work / "oci"
            build.umoci_image(layout, "latest", [build.busybox_tree])
            build.skopeo_push(layout, "latest", reg.address, "busybox:latest")
            ours_uki = work / "one.efi"
            uki.add_to_cmdline(args.uki.resolve(),
                               f"one.insecure_registries={GUEST_REGISTRY}", ours_uki)
            base_uki = work / "baseline.efi"
            parts = dict(uki.sections())
            parts[".initrd"] = busybox_initramfs(work, "baseline", BASELINE_INIT.format(
                param=REPORTING_ORDER_PARAM, order=REPORTING_ORDER, idle=args.idle,
                alloc=args.alloc), {})
            uki.assemble(parts, base_uki)
            jobs: list[tuple[str, Callable[[], dict[str, object]]]] = []
            for i in range(args.n):
                jobs.append(("ours", functools.partial(run_ours, ours_uki, reg.address, args,
                                                       work / f"ours{i}")))
                jobs.append(("baseline", functools.partial(run_baseline, base_uki, args,
                                                           work / f"base{i}")))
            # Side by side: every VM boots at once and lives through the whole run.
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                futures = [(kind, pool.submit(job)) for kind, job in jobs]
                runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
                for kind, future in futures:
                    runs[kind].append(future.result())
        finally:
            reg.stop()
    results["runs"] = runs
    for kind_runs in runs.values():
        for run in kind_runs:
            # What the allocation added on the host: less than ALLOC where the guest put it in
            # pages the host already held (without the balloon: whatever the boot touched).
            run["peak_rise_mib"] = round(run["peak"]["shmem_mib"] - run["idle"]["shmem_mib"], 1)
    ours, base = medians(runs["ours"]), medians(runs["baseline"])
    results["ours"], results["baseline"] = ours, base
    results["ratio"] = r = ratios(ours, base)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print(table(ours, base, r))


if __name__ == "__main__":
    main()
