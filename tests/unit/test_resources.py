"""Container resources: Kubernetes quantities (onectl), the pod file's `resources`, the checks
before anything is made, and what config.json asks the runtime for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from init.services.pod import resources, spec
from init.services.pod.errors import InvalidPod
from init.services.pod.model import Resources
from init.system import cgroups
from onectl import podfile, quantity


@pytest.mark.parametrize("text, expected", [
    ("64Mi", 64 << 20), ("1Gi", 1 << 30), ("500M", 500_000_000), ("1.5Gi", 3 << 29),
    ("123456", 123456), (" 8Ki ", 8192),
])
def test_memory_quantities(text: str, expected: int) -> None:
    assert quantity.memory_bytes(text) == expected


@pytest.mark.parametrize("text, expected", [("250m", 250), ("0.5", 500), ("2", 2000),
                                            ("1.25", 1250)])
def test_cpu_quantities(text: str, expected: int) -> None:
    assert quantity.cpu_millis(text) == expected


@pytest.mark.parametrize("bad", ["64MB", "lots", "-1Mi", ""])
def test_bad_memory(bad: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.memory_bytes(bad)


@pytest.mark.parametrize("bad", ["0.0005", "quarter", "1.5m", "-1"])
def test_bad_cpu(bad: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.cpu_millis(bad)


def test_a_kubernetes_pod_maps_onto_resources() -> None:
    warnings: list[str] = []
    request = podfile.request_of({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
            "limits": {"memory": "64Mi", "cpu": "250m", "pids": 100},
            "requests": {"cpu": "100m", "memory": "32Mi"}}}]}}, warnings.append)
    r = request.containers[0].resources
    assert (r.memory_limit_bytes, r.cpu_limit_millis, r.cpu_request_millis, r.pids_limit) == \
        (64 << 20, 250, 100, 100)
    assert any("requests.memory" in w for w in warnings), warnings
    with pytest.raises(podfile.PodFileError, match="resources"):
        podfile.request_of({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                            "spec": {"containers": [{"name": "c", "image": "b", "resources": {
                                "limits": {"memory": "lots"}}}]}})


@pytest.mark.parametrize("bad, message", [
    (Resources(memory_limit_bytes=1 << 20), "memory limit"),
    (Resources(cpu_limit_millis=5), "CPU limit"),
    (Resources(cpu_request_millis=2_000_000), "CPU request"),
    (Resources(pids_limit=1 << 23), "pids limit"),
])
def test_values_no_container_runs_with_are_invalid(bad: Resources, message: str) -> None:
    with pytest.raises(InvalidPod, match=message):
        resources.check(bad, "container c")


def test_config_json_asks_for_the_limits(tmp_path: Path) -> None:
    r = Resources(memory_limit_bytes=32 << 20, cpu_limit_millis=250, cpu_request_millis=500,
                  pids_limit=64)
    doc = spec.config(spec.Process(["sh"], [], "/", 0, 0), rootfs=tmp_path, hostname="h",
                      etc_files={}, resources=resources.linux_resources(r, default_pids_limit=9),
                      cgroups_path="/pods/p/c")
    linux = doc["linux"]
    assert linux["cgroupsPath"] == "/pods/p/c"
    assert linux["resources"]["memory"] == {"limit": 32 << 20, "swap": 32 << 20}
    assert linux["resources"]["cpu"] == {"quota": 25_000, "period": 100_000, "shares": 512}
    assert linux["resources"]["pids"] == {"limit": 64}
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    unset = resources.linux_resources(Resources(), default_pids_limit=9)
    assert unset == {"pids": {"limit": 9}}
    update = resources.update_document(Resources(), default_pids_limit=9)
    assert update["memory"] == {"limit": -1, "swap": -1} and update["cpu"]["quota"] == -1


def test_the_pods_cgroup_tree(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    threads = tmp_path / "threads-max"
    threads.write_text("950\n")
    for name in ("init", "pods"):
        (root / name).mkdir()
        (root / name / "cgroup.procs").write_text("")
    tree = cgroups.setup(100 << 20, 32 << 20, 128, root, threads)
    assert tree is not None
    assert (tree.memory_max, tree.pids_max) == (68 << 20, 822)
    assert (root / "pods" / "memory.max").read_text() == str(68 << 20)
    assert (root / "pods" / "pids.max").read_text() == "822"
    assert (root / "init" / "memory.min").read_text() == str(32 << 20)
    assert (root / "init" / "cpu.weight").read_text() == "1000"
    assert cgroups.container_path(tree, "p", "c") == "/pods/p/c"
    assert resources.default_pids(tree.pids_max) == 205
    events = tmp_path / "ctr"
    events.mkdir()
    (events / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n")
    assert cgroups.oom_kills(events) == 1 and cgroups.oom_kills(tmp_path / "none") == 0


def test_the_unified_hierarchy_is_found_where_it_is_mounted(tmp_path: Path) -> None:
    hybrid = tmp_path / "mountinfo"
    hybrid.write_text(
        "35 24 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    assert cgroups.unified_root(str(hybrid)) == Path("/sys/fs/cgroup/unified")
    plain = tmp_path / "plain"
    plain.write_text("30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n")
    assert cgroups.unified_root(str(plain)) == Path("/sys/fs/cgroup")
    me = cgroups.path_of(os.getpid())
    assert me is not None and me.is_dir()  # this process's own cgroup, on this host
