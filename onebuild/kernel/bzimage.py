"""The kernel build: kernel.version + kernel.config → target/bzImage, through the build cache.

Flow: find the source → key = every input (version, source, epoch, fragment, toolchain, recipe)
→ on a miss: unpack, configure (checked), `make bzImage` in kernel/build/ and store the entry →
copy the entry's files into target/. A cache hit skips all but the copy.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from onebuild import cache, paths, tools
from onebuild.kernel import kconfig, patches, source
from onebuild.kernel.source import Source
from onebuild.tools import BuildError

# Bump when a change below alters what a build produces, so old cache entries are not reused.
RECIPE_VERSION = 1
OUTPUTS = ("bzImage", "kernel.release", "kernel.config")


def build_epoch() -> int:
    """The time stamped into the kernel: SOURCE_DATE_EPOCH, else the last commit that touched
    kernel.version or kernel.config (not HEAD, so unrelated commits keep the cache key), else
    the last commit, else 0."""
    if value := os.environ.get("SOURCE_DATE_EPOCH"):
        return int(value)
    inputs = [source.VERSION_FILE.name, kconfig.FRAGMENT_FILE.name]
    for pathspec in (["--", *inputs], []):
        try:
            stamp = tools.output(["git", "log", "-1", "--format=%ct", *pathspec], cwd=paths.ROOT)
        except BuildError:
            return 0
        if stamp:
            return int(stamp)
    return 0


def build_env(epoch: int) -> dict[str, str]:
    """What kbuild would otherwise take from the clock, the user and the host: fixed values."""
    return {
        # `date`'s own format, which kbuild's tools parse back with `date -d`
        "KBUILD_BUILD_TIMESTAMP": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(epoch)),
        "KBUILD_BUILD_USER": "mvirt",
        "KBUILD_BUILD_HOST": "mvirt-one",
        "KBUILD_BUILD_VERSION": "1",  # else a counter in build/.version grows with each build
    }


def key_inputs(version: str, src: Source, epoch: int, fragment_text: str) -> dict[str, Any]:
    return {
        "recipe": RECIPE_VERSION,
        "arch": kconfig.ARCH,
        "version": version,
        "source": src.identity,
        "epoch": epoch,
        "toolchain": cache.toolchain(),
        "kernel.config": fragment_text,
        "patches": patches.identity(),
    }


def cache_entry(inputs: dict[str, Any]) -> cache.Entry:
    return cache.Entry("kernel", inputs, OUTPUTS)


def compile_kernel(tree: Path, objdir: Path, epoch: int) -> None:
    jobs = os.environ.get("KERNEL_JOBS") or str(os.cpu_count() or 1)
    kconfig.make(tree, objdir, f"-j{jobs}", "bzImage", env=build_env(epoch))


def collect(tree: Path, objdir: Path, dest: Path) -> None:
    """The finished build's outputs (OUTPUTS) into `dest`."""
    shutil.copyfile(objdir / "arch/x86/boot/bzImage", dest / "bzImage")
    argv = kconfig.make_argv(tree, objdir, "-s", "kernelrelease")
    release = tools.output(argv, env=kconfig.make_env())
    (dest / "kernel.release").write_text(release + "\n")
    shutil.copyfile(objdir / ".config", dest / "kernel.config")


def build(tarball: str = "") -> None:
    """Build target/bzImage (+ kernel.release, kernel.config), or take it from the cache."""
    version = source.kernel_version()
    src = source.find_source(tarball)
    epoch = build_epoch()
    fragment_text = kconfig.FRAGMENT_FILE.read_text()
    entry = cache_entry(key_inputs(version, src, epoch, fragment_text))

    def compile_into(dest: Path) -> None:
        tree = source.unpack(src, version)
        objdir = tree / kconfig.BUILD_SUBDIR
        with tools.step(f"Configuring kernel {version} (tinyconfig + kernel.config)"):
            kconfig.configure(tree, objdir)
        with tools.step(f"Building kernel {version} bzImage"):
            compile_kernel(tree, objdir, epoch)
        collect(tree, objdir, dest)

    hit = entry.obtain(compile_into)
    print(f"kernel {version}: {'cache hit' if hit else 'stored in cache'} {entry.path}")
    entry.install(paths.TARGET)
