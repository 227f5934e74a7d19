"""The pure parts of the pod and task services: Docker's rules, ids, log tails, runtime errors."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from init.services.pod import ids, logs, spec
from init.services.pod.errors import InvalidPod
from init.services.task.runtime import error_text, root_is_initramfs


def _proc(tmp_path: Path, **kw: object) -> spec.Process:
    base: dict[str, object] = dict(entrypoint=["/ep"], cmd=["c1"], image_env=["A=1", "B=2"],
                                   image_workdir="/w", image_user="", command=[], args=[],
                                   env=[], working_dir="", rootfs=tmp_path)
    base.update(kw)
    return spec.process(**base)  # type: ignore[arg-type]


def test_docker_rules(tmp_path: Path) -> None:
    assert _proc(tmp_path).args == ["/ep", "c1"]
    assert _proc(tmp_path, args=["x"]).args == ["/ep", "x"]
    assert _proc(tmp_path, command=["/bin/true"]).args == ["/bin/true"]  # Cmd dropped
    assert _proc(tmp_path, command=["/b"], args=["y"]).args == ["/b", "y"]
    p = _proc(tmp_path, env=["B=3", "C=4"], working_dir="/x")
    assert p.env == [spec.DEFAULT_PATH, "A=1", "B=3", "C=4"] and p.cwd == "/x"
    with pytest.raises(InvalidPod):
        _proc(tmp_path, entrypoint=[], cmd=[])
    with pytest.raises(InvalidPod):
        _proc(tmp_path, env=["NOEQUALS"])


def test_users_from_the_image(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\nweb:x:33:34::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    assert spec.resolve_user("web", tmp_path) == (33, 34)
    assert spec.resolve_user("33", tmp_path) == (33, 34)
    assert spec.resolve_user("1000:1000", tmp_path) == (1000, 1000)
    assert spec.resolve_user("web:staff", tmp_path) == (33, 50)
    with pytest.raises(InvalidPod):
        spec.resolve_user("nobody", tmp_path)



def _passwd_lookup_in_a_thread(user: str, rootfs: Path, fifo: Path | None = None) -> object:
    """resolve_user's result or exception, failing if it blocks (a FIFO is then unblocked by
    opening it for writing, so the thread ends)."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(spec.resolve_user, user, rootfs)
        try:
            return future.result(timeout=10) if future.exception(timeout=10) is None \
                else future.exception()
        except FutureTimeout:
            if fifo is not None:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            raise AssertionError(f"resolve_user({user!r}) blocked") from None


def test_users_are_looked_up_inside_the_rootfs_only(tmp_path: Path) -> None:
    host = tmp_path / "host-secret"
    host.write_text("app:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    passwd = root / "etc/passwd"
    for target in (str(host), "../../../../../../.." + str(host)):
        passwd.unlink(missing_ok=True)
        passwd.symlink_to(target)  # the container sees no such file
        with pytest.raises(InvalidPod, match="not in its /etc/passwd"):
            spec.resolve_user("app", root)
        assert spec.resolve_user("4242", root) == (4242, 0)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/passwd").write_text("app:x:7:8::/:/bin/sh\n")
    for target in ("/usr/lib/passwd", "../usr/lib/passwd", "../../../usr/lib/passwd"):
        passwd.unlink()
        passwd.symlink_to(target)  # inside the rootfs, as the container resolves it
        assert spec.resolve_user("app", root) == (7, 8)


def test_a_passwd_that_is_no_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    fifo = tmp_path / "etc/passwd"
    os.mkfifo(fifo)
    for user in ("app", "1000"):
        err = _passwd_lookup_in_a_thread(user, tmp_path, fifo)
        assert isinstance(err, InvalidPod) and "not a regular file" in str(err), err
    fifo.unlink()
    fifo.mkdir()
    assert isinstance(_passwd_lookup_in_a_thread("app", tmp_path), InvalidPod)
    fifo.rmdir()
    with open(fifo, "wb") as f:
        f.truncate(5 << 20)  # sparse: larger than any passwd
    err = _passwd_lookup_in_a_thread("app", tmp_path)
    assert isinstance(err, InvalidPod) and "larger than" in str(err), err

def test_config_namespaces_and_mounts(tmp_path: Path) -> None:
    doc = spec.config(_proc(tmp_path), rootfs=tmp_path, hostname="pod",
                      etc_files={"/etc/hosts": tmp_path / "hosts"})
    kinds = {n["type"] for n in doc["linux"]["namespaces"]}
    assert kinds == {"pid", "mount", "ipc", "uts", "cgroup"}  # the network is the VM's
    dests = [m["destination"] for m in doc["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
              "/etc/hosts"):
        assert d in dests
    assert doc["hostname"] == "pod"


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "..", "a" * 65, "é", "a b"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(InvalidPod):
        ids.check("pod", bad)


def test_good_ids() -> None:
    for good in ("a", "web-1", "A.b_c", "0" * 64):
        assert ids.check("pod", good) == good


def test_tail_offset(tmp_path: Path) -> None:
    f = tmp_path / "log"
    f.write_bytes(b"".join(b"l%d\n" % i for i in range(100000)))
    data = f.read_bytes()
    assert data[logs.tail_offset(str(f), 2):] == b"l99998\nl99999\n"
    assert logs.tail_offset(str(f), 0) == 0
    assert logs.tail_offset(str(f), 10**6) == 0
    f.write_bytes(b"a\nno newline")
    assert f.read_bytes()[logs.tail_offset(str(f), 1):] == b"no newline"


def test_runtime_error_text() -> None:
    runc = ('time="2026" level=error msg="runc create failed: unable to start container '
            'process: exec: \\"nope\\": executable file not found in $PATH"\n')
    assert error_text(runc) == ('runc create failed: unable to start container process: '
                                'exec: "nope": executable file not found in $PATH')
    assert error_text('{"msg": "boom", "level": "error"}\n') == "boom"
    assert error_text("plain crun error\n") == "plain crun error"


def test_initramfs_detection(tmp_path: Path) -> None:
    m = tmp_path / "mounts"
    m.write_text("rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n")
    assert root_is_initramfs(str(m))
    m.write_text("/dev/vda / ext4 rw 0 0\n")
    assert not root_is_initramfs(str(m))


def test_fs_type_takes_the_longest_mount_point(tmp_path: Path) -> None:
    from init.system.mounts import fs_type

    m = tmp_path / "mounts"
    m.write_text("rootfs / rootfs rw 0 0\ntmpfs /var/lib/x tmpfs rw 0 0\n")
    assert fs_type(Path("/var/lib/x/pods"), str(m)) == "tmpfs"
    assert fs_type(Path("/var/lib/xy"), str(m)) == "rootfs"
