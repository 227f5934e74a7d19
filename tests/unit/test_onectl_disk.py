"""--data-disk PATH[:SIZE]: what is accepted, what is refused, and that an existing image is
never changed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from onectl import disk
from onectl.errors import OnectlError


@pytest.mark.parametrize("text,size", [
    ("2G", 2 << 30), ("512M", 512 << 20), ("1T", 1 << 40), ("65536K", 64 << 20),
    ("4g", 4 << 30), ("2GiB", 2 << 30), ("16777216", 16 << 20), ("3GB", 3 << 30)])
def test_sizes(text: str, size: int) -> None:
    assert disk.parse_size(text) == size


@pytest.mark.parametrize("text,message", [
    ("", "bad size"), ("2X", "bad size"), ("-1G", "bad size"), ("1.5G", "bad size"),
    ("4", "below the minimum of 16M"), ("15M", "below the minimum"),
    ("16777217", "not a whole number of 512-byte sectors")])
def test_bad_sizes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        disk.parse_size(text)


def test_parse_path_and_size() -> None:
    assert disk.parse("/srv/d.img:2G") == disk.DataDisk(Path("/srv/d.img"), 2 << 30)
    assert disk.parse("/srv/d.img") == disk.DataDisk(Path("/srv/d.img"), None)
    assert disk.parse("d.img").path == Path.cwd() / "d.img"
    # A colon followed by a slash belongs to the path.
    assert disk.parse("/srv/a:b/d.img") == disk.DataDisk(Path("/srv/a:b/d.img"), None)


@pytest.mark.parametrize("text,message", [
    ("/srv/d.img:", "bad size ''"), (":2G", "no image path"), ("/srv/d.img:lots", "bad size"),
    ("/srv/a,b.img", "cannot contain a comma")])
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        disk.parse(text)


def test_an_existing_image_is_used_as_it_is(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"data that must survive" + bytes(32 << 20))
    before = image.read_bytes()
    assert disk.ensure(disk.DataDisk(image)) is False
    assert disk.ensure(disk.DataDisk(image, len(before))) is False
    with pytest.raises(OnectlError, match=r"exists with 33554454 bytes, not 64M: an existing "
                       "image is never resized"):
        disk.ensure(disk.DataDisk(image, 64 << 20))
    assert image.read_bytes() == before


def test_refused_paths(tmp_path: Path) -> None:
    with pytest.raises(OnectlError, match="neither a file nor a block device"):
        disk.ensure(disk.DataDisk(tmp_path))
    with pytest.raises(OnectlError, match=r"directory .*/absent does not exist"):
        disk.ensure(disk.DataDisk(tmp_path / "absent" / "d.img"))
    assert not (tmp_path / "absent").exists()
