"""/init (preinit/preinit.c): it mounts the /usr squashfs image through a loop device, read-only,
and execs the init as the same process (PID 1), passing arguments and environment on; without an
image it execs at once; when the image cannot be mounted it says why and powers off.

Each case runs the real binary as PID 1 of its own PID and mount namespace, chrooted into a
small root (busybox-static for the shell the stand-in init is). reboot(2) from PID 1 of a child
PID namespace ends that namespace (its init dies of SIGINT), not the machine; the preinit itself
also refuses to power off unless it is PID 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from onebuild import freeze, initramfs, preinit, usrimage

pytestmark = pytest.mark.host

BUSYBOX = Path("/bin/busybox")
INIT = f"/{initramfs.INIT_DIR}/{freeze.NAME}"
# The stand-in for the Python init: what it runs as and what it sees.
REPORT = """#!/bin/busybox sh
echo "pid=$$ argv0=$0 args=$* one_env=$ONE_TEST"
/bin/busybox grep ' /usr ' /proc/mounts
/bin/busybox ls /dev
"""


def _root(base: Path) -> Path:
    root = base / "root"
    for d in ("bin", "dev", "proc", "usr"):
        (root / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    preinit.build(root / "init", init=INIT,
                  images=[(f"/{image}", f"/{mount}") for image, mount in initramfs.IMAGES])
    return root


def _usr_tree(base: Path, script: str = REPORT) -> Path:
    usr = base / "usr-tree"
    init = usr / Path(INIT).relative_to("/usr")
    init.parent.mkdir(parents=True)
    init.write_text(script)
    init.chmod(0o755)
    return usr


def _boot(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run root/init as PID 1 of new PID and mount namespaces, chrooted into root."""
    command = f'mount -t proc proc "{root}/proc" && exec chroot "{root}" /init "$@"'
    return subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--propagation", "private",
         "sh", "-c", command, "sh", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "ONE_TEST": "passed"})


def _loop_devices_backed_by(path: Path) -> list[str]:
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if str(path) in backing.read_text():
                found.append(backing.parent.parent.name)
        except OSError:
            continue
    return found


def test_mounts_the_image_read_only_and_execs_the_init_as_pid_1(tmp_path: Path) -> None:
    root = _root(tmp_path)
    image = root / initramfs.USR_IMAGE
    usrimage.make(_usr_tree(tmp_path), image)
    proc = _boot(root, "one.debug", "x")
    assert proc.returncode == 0, proc.stderr
    first, mount, *dev = proc.stdout.splitlines()
    assert first == f"pid=1 argv0={INIT} args=one.debug x one_env=passed"
    source, target, fstype, options = mount.split()[:4]
    assert (target, fstype) == ("/usr", "squashfs")
    assert source.startswith("/dev/loop")
    assert "ro" in options.split(",")
    # The device nodes it made were only for the mount.
    assert not [name for name in dev if name.startswith("loop")]
    # AUTOCLEAR: with the namespace gone (and the mount with it), the loop device lets go.
    deadline = time.monotonic() + 10
    while _loop_devices_backed_by(image) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _loop_devices_backed_by(image) == []


LAZY_MOUNT = f"/{initramfs.LAZY}"
LAZY_IMAGE = f"/{initramfs.LAZY_IMAGE}"


def _two_images(root: Path, base: Path, script: str) -> None:
    """The /usr image, with a link into the lazy one and its mount point, and the lazy image."""
    usr = _usr_tree(base, script)
    (usr / "bin").mkdir()
    (usr / "bin" / "tool").symlink_to(f"..{LAZY_MOUNT.removeprefix('/usr')}/bin/tool")
    lazy_in_usr = LAZY_MOUNT.removeprefix("/usr/")
    (usr / lazy_in_usr).mkdir(parents=True)
    lazy = base / "lazy-tree"
    (lazy / "bin").mkdir(parents=True)
    (lazy / "bin" / "tool").write_text("read from the lazy image\n")
    usrimage.make(usr, root / initramfs.USR_IMAGE)
    usrimage.make(lazy, root / LAZY_IMAGE.lstrip("/"), compression=usrimage.LAZY_COMPRESSION)


def test_mounts_the_lazy_image_inside_usr_before_the_init(tmp_path: Path) -> None:
    root = _root(tmp_path)
    script = ("#!/bin/busybox sh\n/bin/busybox grep ' /usr' /proc/mounts\n"
              "/bin/busybox cat /usr/bin/tool\n")
    _two_images(root, tmp_path, script)
    proc = _boot(root)
    assert proc.returncode == 0, proc.stderr
    usr, lazy, content = proc.stdout.splitlines()
    assert usr.split()[1:3] == ["/usr", "squashfs"]
    source, target, fstype, options = lazy.split()[:4]
    assert (target, fstype) == (LAZY_MOUNT, "squashfs")
    assert source.startswith("/dev/loop") and source != usr.split()[0]
    assert "ro" in options.split(",")
    assert content == "read from the lazy image"


def test_a_lazy_image_that_does_not_mount_powers_off_with_the_reason(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _two_images(root, tmp_path, REPORT)
    (root / LAZY_IMAGE.lstrip("/")).write_bytes(b"not a squashfs image" * 512)
    proc = _boot(root)
    assert proc.returncode == -signal.SIGINT, (proc.returncode, proc.stdout, proc.stderr)
    assert f"preinit: mount {LAZY_IMAGE} on {LAZY_MOUNT}: " in proc.stderr
    assert "pid=" not in proc.stdout


def test_without_an_image_it_execs_the_init_at_once(tmp_path: Path) -> None:
    root = _root(tmp_path)
    shutil.copytree(_usr_tree(tmp_path), root / "usr", dirs_exist_ok=True)
    proc = _boot(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"pid=1 argv0={INIT} args= one_env=passed"


def test_an_image_that_does_not_mount_powers_off_with_the_reason(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / initramfs.USR_IMAGE).write_bytes(b"not a squashfs image" * 512)
    proc = _boot(root)
    # PID 1 of a PID namespace that calls reboot(RB_POWER_OFF) dies of SIGINT; unshare, which
    # waited for it, passes that on.
    assert proc.returncode == -signal.SIGINT, (proc.returncode, proc.stdout, proc.stderr)
    assert f"preinit: mount /{initramfs.USR_IMAGE} on /usr: " in proc.stderr
    assert "pid=" not in proc.stdout


def test_outside_pid_1_a_failure_exits_instead_of_powering_off(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / initramfs.USR_IMAGE).write_bytes(b"not a squashfs image" * 512)
    # In a PID namespace of its own all the same (a shell is its PID 1), so that a preinit that
    # did call reboot(2) could only end that namespace.
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c",
         f'chroot "{root}" /init; echo "exit=$?"'],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "exit=1"
    assert "preinit: mount" in proc.stderr
