"""The UKI: systemd's EFI stub with the kernel, initramfs, command line and os-release as sections.

Bookworm has no ukify, and trixie's ukify with the 252 stub grows `.sbat` into `.sdmagic` (the
stub then warns about overlapping sections and stalls ~3 s). So the sections are added with
objcopy at addresses we compute with pefile: each starts on a 4 KiB boundary after the stub's last
section, in ukify's order with `.linux` last.
"""

from __future__ import annotations

import os
from pathlib import Path

import pefile

from onebuild import initramfs, inspect, paths, reproducible
from onebuild.tools import BuildError, run, step

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
OS_RELEASE = paths.ROOT / "initramfs" / "rootfs" / "etc" / "os-release"
CMDLINE_SOURCE = paths.ROOT / "cmdline.txt"
CMDLINE = paths.TARGET / "cmdline"  # as the stub passes it: one line
OUT = paths.TARGET / "mvirt-one.efi"


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def sections() -> dict[str, Path]:
    """Section name -> the file whose bytes it must hold, in the order they are laid out."""
    return {
        ".osrel": OS_RELEASE,
        ".cmdline": CMDLINE,
        ".uname": paths.TARGET / "kernel.release",
        # zstd: 1.6 MB smaller than the .gz and as fast to unpack (see initramfs.archive).
        ".initrd": initramfs.CPIO_ZST,
        ".linux": paths.TARGET / "bzImage",
    }


def _write_cmdline() -> None:
    # The stub passes .cmdline verbatim: one line, no trailing newline.
    text = " ".join(CMDLINE_SOURCE.read_text().split())
    CMDLINE.write_text(text)


def build(stub: Path = STUB, out: Path | None = None) -> None:
    """target/mvirt-one.efi from the build outputs (and target/cmdline from cmdline.txt)."""
    out = out or OUT
    with step(f"Assembling {out}"):
        _write_cmdline()
        assemble(sections(), out, stub=stub)


def assemble(parts: dict[str, Path], out: Path, *, stub: Path = STUB) -> None:
    """Add `parts` (section name -> file, in layout order) to the stub and check the result."""
    if not stub.exists():
        raise BuildError(f"EFI stub {stub} missing: apt-get install systemd-boot-efi")
    pe = pefile.PE(str(stub), fast_load=True)
    # The 252 stub declares 512-byte sections; 4 KiB is what is measured to boot (page
    # aligned, as ukify lays them out) and is still a multiple of the declared alignment.
    alignment = max(pe.OPTIONAL_HEADER.SectionAlignment, 4096)
    base = pe.OPTIONAL_HEADER.ImageBase
    offset = _align(max(s.VirtualAddress + s.Misc_VirtualSize for s in pe.sections), alignment)
    pe.close()
    argv: list[str | os.PathLike[str]] = ["objcopy"]
    for name, source in parts.items():
        argv += ["--add-section", f"{name}={source}",
                 "--change-section-vma", f"{name}={base + offset:#x}"]
        offset = _align(offset + source.stat().st_size, alignment)
    tmp = out.with_suffix(".tmp")
    run([*argv, stub, tmp], quiet=True)
    _fix_timestamp(tmp)
    inspect.check_uki(tmp, parts)
    os.replace(tmp, out)


def _fix_timestamp(path: Path) -> None:
    """objcopy stamps the PE header with the current time; use the reproducible epoch instead."""
    pe = pefile.PE(str(path), fast_load=True)
    pe.FILE_HEADER.TimeDateStamp = reproducible.epoch() & 0xFFFFFFFF
    pe.OPTIONAL_HEADER.CheckSum = 0
    data = bytearray(pe.write())
    pe.close()
    fixed = pefile.PE(data=bytes(data), fast_load=True)
    fixed.OPTIONAL_HEADER.CheckSum = fixed.generate_checksum()
    path.write_bytes(fixed.write())
    fixed.close()
