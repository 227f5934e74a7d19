"""ELF dependencies with pyelftools: what a binary needs, and whether a tree can load it.

The initramfs has no package manager behind it: every ELF it carries must find its interpreter
and each DT_NEEDED library inside the tree, or the kernel's exec of /init fails with ENOENT
before a single line is printed. This module both fills the tree with the host's libraries and
checks the result.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from onebuild.tools import BuildError

# Where the dynamic loader looks by default (x86_64 Debian multiarch) — inside the tree.
DEFAULT_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
HOST_LIB_DIRS = tuple(Path("/") / d for d in DEFAULT_LIB_DIRS)


@dataclass(frozen=True)
class ElfInfo:
    interp: str | None
    needed: tuple[str, ...]
    runpath: tuple[str, ...] = field(default=())

    @property
    def is_static(self) -> bool:
        return self.interp is None and not self.needed


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read(path: Path) -> ElfInfo:
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            interp = None
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    # pyelftools sets these attributes per tag/segment type: untyped for mypy.
                    interp = seg.get_interp_name()  # type: ignore[attr-defined]
            needed: list[str] = []
            runpath: list[str] = []
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(tag.needed)  # type: ignore[attr-defined]
                        elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                            value = (tag.runpath  # type: ignore[attr-defined]
                                     if tag.entry.d_tag == "DT_RUNPATH"
                                     else tag.rpath)  # type: ignore[attr-defined]
                            runpath += value.split(":")
            return ElfInfo(interp, tuple(needed), tuple(runpath))
    except ELFError as e:
        raise BuildError(f"{path}: not a readable ELF file: {e}") from e


def _search_dirs(tree: Path, elf_path: Path, info: ElfInfo, extra: tuple[str, ...]) -> list[Path]:
    origin = elf_path.parent
    dirs = [Path(str(origin) + r[len("$ORIGIN"):]) if r.startswith("$ORIGIN")
            else tree / r.lstrip("/") for r in info.runpath if r]
    # The PyInstaller bootloader points the loader at its bundle directory for what it loads
    # (libpython, extension modules); the bootloader executable itself gets no such help.
    dirs += [tree / d for d in extra if (tree / d) in elf_path.parents]
    dirs += [tree / d for d in DEFAULT_LIB_DIRS]
    return dirs


def _find(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        candidate = d / name
        if candidate.exists():
            return candidate
    return None


def elves(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p))


def missing(tree: Path, extra_lib_dirs: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """For each ELF in the tree, what it needs that the tree lacks (empty dict: all loadable)."""
    problems: dict[str, list[str]] = {}
    for path in elves(tree):
        info = read(path)
        lacks: list[str] = []
        if info.interp and not (tree / info.interp.lstrip("/")).exists():
            lacks.append(f"interpreter {info.interp}")
        dirs = _search_dirs(tree, path, info, extra_lib_dirs)
        lacks += [lib for lib in info.needed if _find(lib, dirs) is None]
        if lacks:
            problems[str(PurePosixPath("/") / path.relative_to(tree))] = lacks
    return problems


def add_host_libraries(tree: Path, extra_lib_dirs: tuple[str, ...] = ()) -> list[str]:
    """Copy the host libraries (and loader) the tree's ELFs need, until nothing is missing."""
    added: list[str] = []
    while True:
        problems = missing(tree, extra_lib_dirs)
        wanted = sorted({item for items in problems.values() for item in items})
        if not wanted:
            return added
        progress = False
        for item in wanted:
            if item.startswith("interpreter "):
                src = Path(item.split(" ", 1)[1])
                dest = tree / str(src).lstrip("/")
            else:
                host = _find(item, list(HOST_LIB_DIRS))
                if host is None:
                    continue
                src, dest = host, tree / "lib/x86_64-linux-gnu" / item
            if not src.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src.resolve(), dest)
            dest.chmod(0o755)
            added.append(str(dest.relative_to(tree)))
            progress = True
        if not progress:
            raise BuildError(f"libraries not found on the host: {', '.join(wanted)}")


def link_duplicates(tree: Path, bundle_dirs: tuple[str, ...]) -> list[str]:
    """Make each library of `bundle_dirs` that is byte for byte a library add_host_libraries put
    in the tree a relative link to that one: one copy of each, whoever loads it by which path."""
    system = (tree / DEFAULT_LIB_DIRS[0]).resolve()
    linked: list[str] = []
    for d in bundle_dirs:
        for p in sorted((tree / d).iterdir()):
            twin = system / p.name
            if (p.is_symlink() or not p.is_file() or not twin.is_file()
                    or not filecmp.cmp(p, twin, shallow=False)):
                continue
            p.unlink()
            p.symlink_to(os.path.relpath(twin, p.parent.resolve()))
            linked.append(str(p.relative_to(tree)))
    return linked


def check_loadable(tree: Path, extra_lib_dirs: tuple[str, ...] = ()) -> None:
    """Fail the build if any ELF in the tree could not be loaded from the tree alone."""
    problems = missing(tree, extra_lib_dirs)
    if problems:
        lines = [f"  {path}: missing {', '.join(items)}"
                 for path, items in sorted(problems.items())]
        raise BuildError("ELF files in the initramfs cannot load:\n" + "\n".join(lines))
