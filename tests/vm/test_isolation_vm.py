"""Isolation in the VM, one boot (TCG, 128 MiB, the shipped crun), where the doors only exist
there:
- a root container (the isolation probe) meets shut doors: no vsock socket (the init's API and the
  host's ports), no mknod of the data disk, no raw socket, no new namespace, no keyring, no mount;
  another pod's processes are not in its PID namespace;
- an image whose layer asks for ~190 MB of trusted.* extended attributes (tmpfs keeps them in
  kernel memory, uncounted) pulls without them, in a VM whose data directory is a tmpfs;
- a container that built a tree 1600 levels deep is deleted, and its pod id works again;
- the disks: one with our serial but an md 1.0 superblock at its end, a blank one without our
  serial, one with only a GPT backup header at its end: none is formatted or written, and the
  data directory falls back to memory.

The guest reaches the registry through the fixture proxy at 10.0.2.100:5000 (guestfwd, restricted
user networking).
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest

from onectl.machine import Machine
from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures import probe
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.vm import GUEST_REGISTRY, Artifacts, api_stub, boot_machine, registry_config

pytestmark = pytest.mark.vm

CALL = 300.0
DISK = 64 << 20



def _disk(path: Path, marks: dict[int, bytes]) -> Path:
    """A sparse disk of zeros but for `marks`: bytes written that far before its end."""
    with open(path, "wb") as f:
        f.truncate(DISK)
        for before_end, data in marks.items():
            f.seek(DISK - before_end)
            f.write(data)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_stopped(stub: one_pb2_grpc.OneServiceStub, pod_id: str) -> one_pb2.Pod:
    deadline = time.monotonic() + CALL
    while (pod := stub.GetPod(one_pb2.GetPodRequest(id=pod_id), timeout=CALL)).state != \
            one_pb2.POD_STATE_STOPPED:
        assert pod.state != one_pb2.POD_STATE_FAILED, pod
        assert time.monotonic() < deadline, pod
        time.sleep(1)
    return pod  # type: ignore[no-any-return]


def _logs(stub: one_pb2_grpc.OneServiceStub, pod_id: str) -> str:
    return b"".join(m.data for m in stub.Logs(one_pb2.LogsRequest(pod_id=pod_id),
                                              timeout=CALL)).decode(errors="replace")


def _run(stub: one_pb2_grpc.OneServiceStub, pod_id: str, image: str, *command: str) -> None:
    stub.CreatePod(one_pb2.CreatePodRequest(id=pod_id, containers=[
        one_pb2.ContainerSpec(id="c", image=image, command=list(command))]), timeout=CALL)
    stub.StartPod(one_pb2.StartPodRequest(id=pod_id), timeout=CALL)


# A tree 8 x 200 levels deep, made with relative paths (its whole path is past PATH_MAX).
DEEP = ("p=d; j=1; while [ $j -lt 200 ]; do p=$p/d; j=$((j+1)); done; "
        "i=0; while [ $i -lt 8 ]; do busybox mkdir -p $p && cd $p || exit 1; i=$((i+1)); done; "
        "echo deep")


def test_isolation_in_the_vm(artifacts: Artifacts, tmp_path: Path, image_proxy: Proxy,
                             busybox_image: Pushed, probe_image: Pushed,
                             xattr_bomb_image: Pushed, machines: list[Machine]) -> None:
    md10 = _disk(tmp_path / "md10.img", {8192: bytes.fromhex("fc4e2ba9") + b"\1\0\0\0"})
    blank = _disk(tmp_path / "blank.img", {})
    gpt = _disk(tmp_path / "gpt.img", {512: b"EFI PART\0\0\1\0"})
    before = {p: _digest(p) for p in (md10, blank, gpt)}
    config = registry_config(artifacts, image_proxy.address, data_disk=md10,
                             disks=[(blank, "scratch"), (gpt, "old-gpt")])
    machine = boot_machine(config, tmp_path)
    machines.append(machine)
    assert machine.vm is not None
    console = machine.vm.console()
    assert re.search(r"data disk /dev/vd\w has the serial mvirt-one-data but is not blank",
                     console), console
    assert re.search(r"data directory \S+ on a tmpfs", console), console
    assert "open files: up to 65536" in console
    with api_stub(machine) as stub:
        # The probe, as root, against every door.
        _run(stub, "attacker", f"{GUEST_REGISTRY}/{probe_image.name}", "/bin/probe", "254",
             "1024")
        _wait_stopped(stub, "attacker")
        log = _logs(stub, "attacker")
        got = probe.parse(log)
        assert {k: got.get(k) for k in probe.SHUT} == probe.SHUT, log
        assert got["open-disk"] in ("ENOENT", "EPERM"), log

        # Another pod's processes: not in the container's PID namespace, so nothing to ptrace
        # or signal there (the probe's ptrace of its own pid 1 aside).
        image = f"{GUEST_REGISTRY}/{busybox_image.name}"
        _run(stub, "victim", image, "busybox", "sleep", "6123")
        _run(stub, "peek", image, "sh", "-c",
             "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done; busybox kill -0 1 && "
             "echo own-pid1")
        _wait_stopped(stub, "peek")
        seen = _logs(stub, "peek")
        assert "own-pid1" in seen and "6123" not in seen, seen
        stub.DeletePod(one_pb2.DeletePodRequest(id="victim", force=True), timeout=CALL)

        # The xattr bomb: pulled without its trusted.* attributes, the VM unharmed.
        done = [p for p in stub.PullImage(one_pb2.PullImageRequest(
            reference=f"{GUEST_REGISTRY}/{xattr_bomb_image.name}"), timeout=CALL)]
        assert done, "no progress from the pull"
        assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy

        # A tree deeper than any recursion: DeletePod removes it, the id is free again.
        _run(stub, "deep", image, "sh", "-c", DEEP)
        pod = _wait_stopped(stub, "deep")
        assert pod.containers[0].exit_code == 0 and _logs(stub, "deep") == "deep\n", pod
        stub.DeletePod(one_pb2.DeletePodRequest(id="deep"), timeout=CALL)
        _run(stub, "deep", image, "true")
        _wait_stopped(stub, "deep")
        stub.DeletePod(one_pb2.DeletePodRequest(id="deep"), timeout=CALL)
    assert machine.stop(timeout=180) == 0
    console = machine.vm.console()
    assert "Kernel panic" not in console and "Traceback" not in console, machine.vm.tail()
    assert "out of memory" not in console.lower(), machine.vm.tail()
    assert "extended attribute trusted.bomb0 (and others of its kind) not kept" in console
    assert {p: _digest(p) for p in before} == before  # no disk was formatted or written
