"""The frozen init's libzstd (onebuild/zstdlib.py): linked from Debian's static library, it
exports exactly what the binding calls, needs only libc, and leaves the compressor out."""

from __future__ import annotations

import io
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from init.services.image import zstd
from onebuild import elfdeps, usrimage, zstdlib
from onebuild.tools import run


def _exported(path: Path) -> set[str]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection)
        assert elf.get_section_by_name(".symtab") is None  # stripped
        return {s.name for s in dynsym.iter_symbols()
                if s["st_shndx"] != "SHN_UNDEF" and s["st_info"]["bind"] == "STB_GLOBAL"}


def _soname(path: Path) -> str:
    with path.open("rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_SONAME":
                        return str(tag.soname)  # type: ignore[attr-defined]
    return ""


def test_the_library_is_the_decompressor_alone(tmp_path: Path) -> None:
    zstdlib.build(tmp_path)
    lib = zstdlib.output(tmp_path)
    assert lib.name == zstd.LIBRARY and _soname(lib) == zstd.LIBRARY
    assert _exported(lib) == set(zstd.SYMBOLS)
    assert elfdeps.read(lib).needed == ("libc.so.6",)
    # Debian's whole libzstd.so.1 is ~800 KB; the decompressor with its legacy decoders ~240 KB.
    assert lib.stat().st_size < 300_000
    # What the guest pays for it, compressed as the /usr image is.
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / lib.name).write_bytes(lib.read_bytes())
    image = tmp_path / "one.squashfs"
    run(["mksquashfs", tree, image, *usrimage.COMPRESSION, "-quiet", "-no-progress"], quiet=True)
    assert image.stat().st_size < 150_000
    # And it works: a frame the zstd tool made decompresses through the binding.
    blob = run(["zstd", "-q", "-c"], input=b"layer " * 10_000, capture=True, quiet=True).stdout
    with zstd.ZstdReader(io.BytesIO(blob), library=zstd.load(lib)) as r:
        assert r.read() == b"layer " * 10_000
