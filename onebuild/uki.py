"""The UKI: systemd's EFI stub with the kernel, initramfs, command line and os-release as sections.

Bookworm has no ukify, and trixie's ukify with the 252 stub grows `.sbat` into `.sdmagic` (the
stub then warns about overlapping sections and stalls ~3 s). So the sections are added with
objcopy at addresses we compute with pefile: each starts on a 4 KiB boundary after the stub's last
section, in ukify's order with `.linux` last.

The kernel in `.linux` is the bzImage with one field of its PE header changed (HANDOVER_KERNEL):
its image version says 0. systemd-stub starts a kernel of image version 1 or later as an EFI
image of its own (LoadImage/StartImage): the firmware copies the kernel, and the kernel's EFI
stub copies the initrd from the stub (LoadFile2) into one more contiguous allocation. A kernel
of version 0 it enters through the EFI handover protocol instead, with boot_params pointing at
the `.initrd` section where the UKI holds it; `noinitrd` (HANDOVER_CMDLINE) stops the kernel's
EFI stub from loading a copy anyway. Measured at 96 MiB under OVMF, where the firmware leaves
~37 MB contiguous: the copies made a UKI with a 7.4 MB initrd fail ("Failed to load initrd:
Out of Resources") and the limit was ~7.2 MB of initrd; handed over, initrds of 9 MB start.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pefile

from onebuild import initramfs, inspect, paths, reproducible
from onebuild.tools import BuildError, run, step

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
OS_RELEASE = paths.ROOT / "initramfs" / "rootfs" / "etc" / "os-release"
CMDLINE_SOURCE = paths.ROOT / "cmdline.txt"
CMDLINE = paths.TARGET / "cmdline"  # as the stub passes it: one line
OUT = paths.TARGET / "mvirt-one.efi"
BZIMAGE = paths.TARGET / "bzImage"
HANDOVER_KERNEL = paths.TARGET / "bzImage.handover"  # what `.linux` holds (see above)
HANDOVER_CMDLINE = "noinitrd"  # appended to cmdline.txt's words in CMDLINE


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
        ".linux": HANDOVER_KERNEL,
    }


def cmdline_words(source: Path = CMDLINE_SOURCE) -> list[str]:
    """The UKI's command line: cmdline.txt's words, then HANDOVER_CMDLINE if not among them."""
    words = source.read_text().split()
    return words if HANDOVER_CMDLINE in words else [*words, HANDOVER_CMDLINE]


def _write_cmdline() -> None:
    # The stub passes .cmdline verbatim: one line, no trailing newline.
    CMDLINE.write_text(" ".join(cmdline_words()))


def handover_kernel(bzimage: Path, out: Path) -> None:
    """`bzimage` with the image version of its PE header set to 0 (see the module's docstring)."""
    try:
        pe = pefile.PE(str(bzimage), fast_load=True)
    except pefile.PEFormatError as e:
        raise BuildError(f"{bzimage} is not a kernel with an EFI stub (no PE header): {e}") from e
    try:
        if pe.OPTIONAL_HEADER.MajorImageVersion > 1:
            # Version 2 would mean a boot protocol this handover choice was not measured with.
            raise BuildError(f"{bzimage}: PE image version {pe.OPTIONAL_HEADER.MajorImageVersion}"
                             ", expected 0 or 1 (Linux's EFI stub)")
        pe.OPTIONAL_HEADER.MajorImageVersion = 0
        pe.OPTIONAL_HEADER.MinorImageVersion = 0
        data = pe.write()
    finally:
        pe.close()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)


def build(stub: Path = STUB, out: Path | None = None) -> None:
    """target/mvirt-one.efi from the build outputs (and target/cmdline from cmdline.txt)."""
    out = out or OUT
    with step(f"Assembling {out}"):
        _write_cmdline()
        handover_kernel(BZIMAGE, HANDOVER_KERNEL)
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


def add_to_cmdline(uki: Path, extra: str, out: Path, *, stub: Path = STUB) -> None:
    """`uki` assembled again at `out` with `extra` after the words of its command line: a UKI
    boots with the command line it carries (tests and benchmarks that need one more setting)."""
    found = {s.name: s for s in inspect.uki_sections(uki)}
    missing = [name for name in sections() if name not in found]
    if missing:
        raise BuildError(f"{uki} is not one of our UKIs: no {', '.join(missing)} section")
    data = uki.read_bytes()
    with tempfile.TemporaryDirectory(prefix="uki-") as tmp:
        parts: dict[str, Path] = {}
        for name in sections():
            content = found[name].content(data)
            if name == ".cmdline":
                content = " ".join([*content.decode().split(), *extra.split()]).encode()
            parts[name] = Path(tmp) / name.lstrip(".")
            parts[name].write_bytes(content)
        assemble(parts, out, stub=stub)
