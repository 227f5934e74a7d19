"""mvirt-one build graph (doit). It only declares tasks; each action is one call into `onebuild`.

`make TARGET` delegates here (mvirt-one.mk). `doit list` shows every task with its one-line doc.
doit reserves the word `clean` for its own command, so `make clean` runs the task `clean_build`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from onebuild import paths

DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": ["one"],
    "verbosity": 2,
    # The dependency database lives at the repository root (git-ignored): doit rewrites it when it
    # exits, so it cannot live in target/, which `clean_build` removes.
    "dep_file": ".doit.db",
    "backend": "json",
}

T = paths.TARGET


def _files(root: str, pattern: str = "**/*") -> list[str]:
    """Every file under `root` (sorted), so adding or touching one re-runs the task."""
    return sorted(
        str(p) for p in Path(root).glob(pattern) if p.is_file() and "__pycache__" not in p.parts
    )


def _param(name: str, env: str, default: str = "") -> dict[str, Any]:
    return {"name": name, "long": name, "type": str, "default": os.environ.get(env, default)}


KERNEL_TARBALL = _param("tarball", "KERNEL_TARBALL")
RUNTIME = _param("runtime", "RUNTIME")


def task_kernel() -> dict[str, Any]:
    """build target/bzImage from kernel.version + kernel.config (cached outside the clone)"""
    from onebuild import kernel

    return {
        "actions": [(kernel.build, [], {})],
        "params": [KERNEL_TARBALL],
        "file_dep": ["kernel.version", "kernel.config", "onebuild/kernel.py"],
        "targets": [str(T / "bzImage"), str(T / "kernel.release")],
        "clean": True,
    }


def task_menuconfig() -> dict[str, Any]:
    """edit the kernel config in menuconfig; changed options are folded back into kernel.config"""
    from onebuild import kernel

    return {
        "actions": [(kernel.menuconfig, [], {})],
        "params": [KERNEL_TARBALL],
        "uptodate": [False],
        "verbosity": 2,
    }


def task_runtime() -> dict[str, Any]:
    """build the static OCI runtime (crun) shipped in the initramfs, or take RUNTIME=path"""
    from onebuild import runtime

    return {
        "actions": [(runtime.build, [], {})],
        "params": [RUNTIME],
        "file_dep": ["onebuild/runtime.py"],
        "targets": [str(T / "runtime" / "runtime.json")],
        # The choice (built crun, or the user's binary and its contents) is part of the state.
        "uptodate": [config_changed(runtime.choice_fingerprint(os.environ.get("RUNTIME", "")))],
        "clean": True,
    }


def task_proto() -> dict[str, Any]:
    """generate the gRPC stubs (oneproto/) from proto/one.proto with grpcio-tools"""
    from onebuild import proto

    return {
        "actions": [(proto.generate, [], {})],
        "file_dep": ["proto/one.proto", "onebuild/proto.py", "requirements.txt"],
        "targets": [f"oneproto/{name}" for name in proto.MODULES],
        "clean": True,
    }


INIT_SOURCES = ["oneproto/one_pb2.py", "oneproto/one_grpc.py", "onebuild/freeze.py",
                "requirements.txt"]


def task_init() -> dict[str, Any]:
    """freeze the Python init with PyInstaller (--onedir) into target/init/"""
    from onebuild import freeze

    return {
        "actions": [(freeze.freeze_onedir, [], {})],
        "file_dep": _files("init", "**/*.py") + INIT_SOURCES,
        "targets": [str(T / "init" / "init")],
        "clean": True,
    }


def task_static() -> dict[str, Any]:
    """freeze the init as one static ELF, target/mvirt-one (PyInstaller --onefile + staticx)"""
    from onebuild import freeze

    return {
        "actions": [(freeze.freeze_static, [], {})],
        "file_dep": _files("init", "**/*.py") + INIT_SOURCES,
        "targets": [str(T / "mvirt-one")],
        "clean": True,
    }


def task_initramfs() -> dict[str, Any]:
    """build target/initramfs.cpio.{gz,zst}: skeleton + frozen init + runtime (reproducible)"""
    from onebuild import initramfs

    return {
        "actions": [(initramfs.build, [], {})],
        "file_dep": _files("initramfs/rootfs")
        + [str(T / "init" / "init"), str(T / "runtime" / "runtime.json")]
        + ["onebuild/initramfs.py", "onebuild/elfdeps.py", "onebuild/cpio.py"],
        "targets": [str(T / "initramfs.cpio.gz"), str(T / "initramfs.cpio.zst"),
                    str(T / "initramfs.tree.txt")],
        "clean": True,
    }


def task_rootfs() -> dict[str, Any]:
    """build target/rootfs.raw: an ext4 image holding the initramfs tree"""
    from onebuild import initramfs

    return {
        "actions": [(initramfs.build_rootfs_image, [], {})],
        "file_dep": [str(T / "initramfs.cpio.gz"), "onebuild/initramfs.py"],
        "targets": [str(T / "rootfs.raw")],
        "clean": True,
    }


def task_uki() -> dict[str, Any]:
    """assemble target/mvirt-one.efi (EFI stub + kernel + initramfs + cmdline) and check it"""
    from onebuild import uki

    return {
        "actions": [(uki.build, [], {})],
        "file_dep": [
            str(T / "bzImage"),
            str(T / "kernel.release"),
            str(T / "initramfs.cpio.zst"),
            "cmdline.txt",
            "onebuild/uki.py",
            "onebuild/inspect.py",
        ],
        "targets": [str(T / "mvirt-one.efi"), str(T / "cmdline")],
        "clean": True,
    }


def task_one() -> dict[str, Any]:
    """build everything: the UKI plus bzImage, cmdline, initramfs, rootfs.raw and the static init"""
    return {"actions": None, "task_dep": ["uki", "rootfs", "static"]}


def task_clean_build() -> dict[str, Any]:
    """remove build outputs (target/), keep the kernel source and downloads (make clean)"""
    from onebuild import cleanup

    return {"actions": [(cleanup.clean, [], {})], "uptodate": [False]}


def task_distclean() -> dict[str, Any]:
    """clean_build + remove the kernel source tree and downloaded tarballs (make distclean)"""
    from onebuild import cleanup

    return {"actions": [(cleanup.distclean, [], {})], "uptodate": [False]}


def task_hosttools() -> dict[str, Any]:
    """fetch host tools Debian bookworm lacks: vhost-device-vsock from sid (for `onectl run`)"""
    from onebuild import hosttools

    return {
        # Returns the binary's path; doit wants None/True/str/dict from a python-action.
        "actions": [lambda: str(hosttools.vhost_device_vsock())],
        "verbosity": 2,
    }


def _onectl_run(argv: list[str]) -> Any:
    # Imported when the task runs, not when the graph loads: onectl needs the generated
    # oneproto/ stubs, which a fresh clone only has after `doit proto`.
    from onectl.cli import run_main

    return run_main(argv)


def task_run_vm() -> dict[str, Any]:
    """boot the freshly built UKI in qemu (onectl run --console); Ctrl-C stops the VM"""
    # Not `run`: doit reserves that word for its own command (as `clean`, see clean_build).
    return {
        "actions": [(_onectl_run, [["run", "--console", str(T / "mvirt-one.efi")]])],
        "file_dep": [str(T / "mvirt-one.efi")],
        "task_dep": ["hosttools"],
        "uptodate": [False],
        "verbosity": 2,
    }
