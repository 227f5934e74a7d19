"""Checks that fail the build when an output is wrong: the UKI's PE sections (pefile)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pefile

from onebuild.tools import BuildError


@dataclass(frozen=True)
class Section:
    name: str
    virtual_address: int
    virtual_size: int
    raw_offset: int
    raw_size: int

    def content(self, image: bytes) -> bytes:
        """The section's bytes in `image` (the PE file): its virtual size, or less where the
        file holds less (the rest would be zeros)."""
        return image[self.raw_offset:self.raw_offset + min(self.raw_size, self.virtual_size)]


def uki_sections(path: Path) -> list[Section]:
    pe = pefile.PE(str(path), fast_load=True)
    try:
        return [
            Section(s.Name.rstrip(b"\0").decode(errors="replace"), s.VirtualAddress,
                    s.Misc_VirtualSize, s.PointerToRawData, s.SizeOfRawData)
            for s in pe.sections
        ]
    finally:
        pe.close()


def _overlaps(ranges: list[tuple[int, int, str]]) -> list[str]:
    found = []
    ordered = sorted(r for r in ranges if r[1] > r[0])
    for (start_a, end_a, a), (start_b, _end_b, b) in itertools.pairwise(ordered):
        if start_b < end_a:
            found.append(f"{a} [{start_a:#x}-{end_a:#x}) overlaps {b} at {start_b:#x}")
    return found


def check_uki(path: Path, expected: dict[str, Path]) -> None:
    """Each expected section present once, byte-equal to its source, and nothing overlapping."""
    secs = uki_sections(path)
    problems: list[str] = []
    problems += _overlaps([(s.virtual_address, s.virtual_address + s.virtual_size, s.name)
                           for s in secs])
    problems += _overlaps([(s.raw_offset, s.raw_offset + s.raw_size, s.name) for s in secs])
    data = path.read_bytes()
    for name, source in expected.items():
        matches = [s for s in secs if s.name == name]
        if len(matches) != 1:
            problems.append(f"section {name}: found {len(matches)} times, want once")
            continue
        s = matches[0]
        want = source.read_bytes()
        got = s.content(data)
        if s.virtual_size != len(want) or got != want:
            problems.append(f"section {name}: {s.virtual_size} bytes differ from {source}"
                            f" ({len(want)} bytes)")
    if problems:
        raise BuildError(f"{path} is not a valid UKI:\n  " + "\n  ".join(problems))
