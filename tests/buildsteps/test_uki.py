"""The UKI's kernel is handed over, not loaded: `.linux` declares PE image version 0, which makes
systemd-stub use the EFI handover protocol, and the command line says `noinitrd`, which keeps the
kernel's EFI stub from copying the initrd (see onebuild/uki.py)."""

from __future__ import annotations

from pathlib import Path

import pefile
import pytest

from onebuild import inspect, uki
from onebuild.tools import BuildError
from tests.fixtures.paths import TARGET


def _image_version(data: bytes) -> tuple[int, int]:
    pe = pefile.PE(data=data, fast_load=True)
    return pe.OPTIONAL_HEADER.MajorImageVersion, pe.OPTIONAL_HEADER.MinorImageVersion


def test_handover_kernel_differs_from_the_bzimage_only_in_its_image_version(
        tmp_path: Path) -> None:
    bzimage = TARGET / "bzImage"
    if not bzimage.exists():
        pytest.fail("target/bzImage missing: run `make one` first")
    original = bzimage.read_bytes()
    assert _image_version(original) == (1, 0)  # Linux's EFI stub: LoadImage in systemd-stub
    out = tmp_path / "bzImage.handover"
    uki.handover_kernel(bzimage, out)
    changed = out.read_bytes()
    assert _image_version(changed) == (0, 0)
    assert len(changed) == len(original)
    # The version bytes and the PE checksum field, nothing else.
    differing = [i for i, (a, b) in enumerate(zip(original, changed, strict=True)) if a != b]
    assert 0 < len(differing) <= 6, differing


def test_the_built_uki_carries_the_handover_kernel_and_noinitrd() -> None:
    built = TARGET / "mvirt-one.efi"
    if not built.exists():
        pytest.fail("target/mvirt-one.efi missing: run `make one` first")
    sections = {s.name: s for s in inspect.uki_sections(built)}
    data = built.read_bytes()
    linux = sections[".linux"]
    assert _image_version(linux.content(data)) == (0, 0)
    cmdline = sections[".cmdline"]
    words = cmdline.content(data).decode().split()
    assert words.count("noinitrd") == 1 and words[0] == "console=ttyS0"


def test_noinitrd_is_added_once(tmp_path: Path) -> None:
    source = tmp_path / "cmdline.txt"
    source.write_text("console=ttyS0\n  quiet\n")
    assert uki.cmdline_words(source) == ["console=ttyS0", "quiet", "noinitrd"]
    source.write_text("noinitrd console=ttyS0")
    assert uki.cmdline_words(source) == ["noinitrd", "console=ttyS0"]


def test_a_file_without_a_pe_header_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "bzImage"
    fake.write_bytes(b"\0" * 4096)
    with pytest.raises(BuildError, match="no PE header"):
        uki.handover_kernel(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_setting_added_to_the_built_ukis_command_line(tmp_path: Path) -> None:
    built = TARGET / "mvirt-one.efi"
    if not built.exists():
        pytest.fail("target/mvirt-one.efi missing: run `make one` first")
    out = tmp_path / "one.efi"
    uki.add_to_cmdline(built, "one.insecure_registries=10.0.2.100:5000", out)
    data = out.read_bytes()
    sections = {s.name: s for s in inspect.uki_sections(out)}
    cmdline = sections[".cmdline"]
    text = cmdline.content(data).decode()
    assert text == (TARGET / "cmdline").read_text() + " one.insecure_registries=10.0.2.100:5000"
    original = built.read_bytes()
    for name, sec in {s.name: s for s in inspect.uki_sections(built)}.items():
        if name in (".initrd", ".linux"):
            new = sections[name]
            assert new.content(data) == sec.content(original)
    with pytest.raises(BuildError, match="not one of our UKIs"):
        uki.add_to_cmdline(uki.STUB, "x", tmp_path / "stub.efi")
