"""mvirt-one build graph (doit). It only declares tasks; each action is one call into `onebuild`.

`make TARGET` delegates here (mvirt-one.mk). `doit list` shows every task with its one-line doc.
doit reserves the word `clean` for its own command, so `make clean` runs the task `clean_build`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from onebuild import paths
from onebuild.modules import step_sources

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
    """A task parameter whose default comes from the environment, which is how make passes it."""
    return {"name": name, "long": name, "type": str, "default": os.environ.get(env, default)}


class OptionsUnchanged:
    """Up to date while `fingerprint(task.options)` is what it was at the last successful run.

    task.options holds the task's parameters (command line, else the default from the
    environment): exactly the values the action will get. doit fills it for tasks named on the
    command line before this check, and for their dependencies only after it, hence the
    init_options() (which parses once, and is a no-op when already done).
    """

    def __init__(self, fingerprint: Callable[[Mapping[str, Any]], str]) -> None:
        self.fingerprint = fingerprint
        self.current = ""

    def configure_task(self, task: Any) -> None:
        task.value_savers.append(lambda: {"options": self.current})

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        task.init_options()
        self.current = self.fingerprint(task.options)
        return bool(values.get("options") == self.current)


def _remove(*targets: Path) -> list[Any]:
    """A clean action for targets that include directories (doit removes only empty ones)."""
    from onebuild import cleanup

    return [(cleanup.remove, [list(targets)], {})]


KERNEL_TARBALL = _param("tarball", "KERNEL_TARBALL")
RUNTIME = _param("runtime", "RUNTIME")
EXTRA_CA_CERTS = _param("extra_ca_certs", "EXTRA_CA_CERTS")


def task_kernel() -> dict[str, Any]:
    """build target/bzImage from kernel.version + kernel.config (cached outside the clone)"""
    from onebuild.kernel import bzimage, source

    return {
        "actions": [(bzimage.build, [], {})],
        "params": [KERNEL_TARBALL],
        "file_dep": ["kernel.version", "kernel.config", *_files("kernel.patches"),
                     *step_sources("onebuild.kernel.bzimage")],
        "uptodate": [OptionsUnchanged(lambda o: source.tarball_fingerprint(o["tarball"]))],
        "targets": [str(T / name) for name in bzimage.OUTPUTS],
        "clean": True,
    }


def task_menuconfig() -> dict[str, Any]:
    """edit the kernel config in menuconfig; changed options are folded back into kernel.config"""
    from onebuild.kernel import menuconfig

    return {
        "actions": [(menuconfig.edit, [], {})],
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
        "file_dep": step_sources("onebuild.runtime"),
        # The choice (built crun, or the user's binary and its contents) is part of the state.
        "uptodate": [OptionsUnchanged(lambda o: runtime.choice_fingerprint(o["runtime"]))],
        # The binary keeps its own name, known only when the task runs: the directory is the
        # target, and runtime.json (written last) names what is in it.
        "targets": [str(runtime.OUT), str(runtime.RUNTIME_JSON)],
        "clean": _remove(runtime.OUT),
    }


def task_proto() -> dict[str, Any]:
    """generate oneproto/ from proto/one.proto: protobuf stubs (host), plain classes (guest)"""
    from onebuild import proto

    return {
        "actions": [(proto.generate, [], {})],
        "file_dep": ["proto/one.proto", "requirements.txt", *step_sources("onebuild.proto")],
        "targets": [str(proto.OUT / name) for name in ("__init__.py", *proto.MODULES)],
        "clean": _remove(proto.OUT),
    }


def _init_sources() -> list[str]:
    """What the frozen init is made of: its code, the generated stubs, the pinned packages."""
    from onebuild import openssllib, proto, zstdlib

    stubs = [str(proto.OUT / name) for name in ("__init__.py", *proto.GUEST_MODULES)]
    return [*_files("init", "**/*.py"), *stubs, str(zstdlib.output()), "requirements.txt",
            *(str(path) for path in openssllib.ARCHIVES.values()),
            *_files("onebuild/pyinstaller_hooks"), *step_sources("onebuild.freeze")]


def task_zstdlib() -> dict[str, Any]:
    """link target/zstd/: a decompression-only libzstd for the frozen init"""
    from onebuild import zstdlib

    return {
        "actions": [(zstdlib.build, [], {})],
        "file_dep": [str(zstdlib.STATIC_LIB), str(zstdlib.BINDING),
                     *step_sources("onebuild.zstdlib")],
        "targets": [str(zstdlib.OUT_DIR), str(zstdlib.output())],
        "clean": _remove(zstdlib.OUT_DIR),
    }


def task_init() -> dict[str, Any]:
    """freeze the Python init with PyInstaller (--onedir) into target/init/"""
    from onebuild import freeze

    return {
        "actions": [(freeze.freeze_onedir, [], {})],
        "file_dep": _init_sources(),
        "targets": [str(freeze.ONEDIR), str(freeze.ONEDIR / freeze.NAME)],
        "clean": _remove(freeze.ONEDIR),
    }


def task_static() -> dict[str, Any]:
    """freeze the init as one static ELF, target/mvirt-one (PyInstaller --onefile + staticx)"""
    from onebuild import freeze

    return {
        "actions": [(freeze.freeze_static, [], {})],
        "file_dep": _init_sources(),
        "targets": [str(freeze.STATIC)],
        "clean": True,
    }


def task_initramfs() -> dict[str, Any]:
    """build target/initramfs.cpio.{gz,zst}: skeleton, /init, squashfs /usr; EXTRA_CA_CERTS=pem"""
    from onebuild import cacerts, freeze, initramfs, preinit, runtime

    host_files = [str(host) for host, _package in initramfs.HOST_FILES.values()]
    return {
        "actions": [(initramfs.build, [], {})],
        "params": [EXTRA_CA_CERTS],
        "file_dep": [*_files("initramfs/rootfs"), str(freeze.ONEDIR / freeze.NAME),
                     str(preinit.SOURCE), str(runtime.RUNTIME_JSON),
                     *map(str, cacerts.mozilla_files()), *host_files,
                     *step_sources("onebuild.initramfs")],
        # The site CAs are a dependency by content, whichever way their path was given.
        "uptodate": [OptionsUnchanged(lambda o: cacerts.extra_fingerprint(o["extra_ca_certs"]))],
        "targets": [str(p) for p in initramfs.OUTPUTS],
        "clean": _remove(*initramfs.OUTPUTS),
    }


def task_rootfs() -> dict[str, Any]:
    """build target/rootfs.raw: an ext4 image holding the initramfs tree"""
    from onebuild import initramfs

    return {
        "actions": [(initramfs.build_rootfs_image, [], {})],
        "file_dep": [str(initramfs.CPIO_GZ), *step_sources("onebuild.initramfs")],
        "targets": [str(initramfs.ROOTFS_IMAGE)],
        "clean": True,
    }


def task_uki() -> dict[str, Any]:
    """assemble target/mvirt-one.efi (EFI stub + kernel + initramfs + cmdline) and check it"""
    from onebuild import uki

    return {
        "actions": [(uki.build, [], {})],
        "file_dep": [*(str(p) for p in uki.sections().values()
                       if p not in (uki.CMDLINE, uki.HANDOVER_KERNEL)),
                     str(uki.BZIMAGE), str(uki.CMDLINE_SOURCE), *step_sources("onebuild.uki")],
        "targets": [str(uki.OUT), str(uki.CMDLINE), str(uki.HANDOVER_KERNEL)],
        "clean": True,
    }


def task_sbom() -> dict[str, Any]:
    """write target/mvirt-one.spdx.json: each file of the initramfs and UKI section, its origin"""
    from onebuild import initramfs, runtime, sbom, uki

    return {
        "actions": [(sbom.build, [], {})],
        "file_dep": [str(uki.OUT), str(initramfs.MANIFEST), str(initramfs.CPIO_GZ),
                     str(runtime.RUNTIME_JSON), str(sbom.KERNEL_CONFIG), str(sbom.KERNEL_VERSION),
                     str(sbom.KERNEL_FRAGMENT), *_files(str(sbom.KERNEL_PATCHES)),
                     "requirements.txt", str(sbom.DPKG_STATUS), *step_sources("onebuild.sbom")],
        "targets": [str(sbom.OUT)],
        "clean": True,
    }


def task_one() -> dict[str, Any]:
    """build everything: the UKI, bzImage, cmdline, initramfs, rootfs.raw, static init and SBOM"""
    return {"actions": None, "task_dep": ["uki", "rootfs", "static", "sbom"]}


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
