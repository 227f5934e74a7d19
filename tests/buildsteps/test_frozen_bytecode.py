"""The frozen init's bytecode: line numbers for tracebacks, no column ranges (they are what the
module archive compresses worst, see onebuild/freeze.py)."""

from __future__ import annotations

import zipfile
from types import CodeType

import pytest
from PyInstaller.archive.readers import CArchiveReader

from onebuild import freeze

pytestmark = pytest.mark.host


def _code(module: str) -> CodeType:
    executable = freeze.ONEDIR / freeze.NAME
    if not executable.exists():
        pytest.fail(f"{executable} missing: run `doit init` first")
    archive = CArchiveReader(str(executable)).open_embedded_archive("PYZ.pyz")
    code = archive.extract(module)
    assert isinstance(code, CodeType)
    return code


def _walk(code: CodeType) -> list[CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            found += _walk(const)
    return found


def test_frozen_code_has_line_numbers_but_no_column_ranges() -> None:
    codes = _walk(_code("init.app"))
    assert len(codes) > 10
    lines = [line for code in codes for _, _, line in code.co_lines() if line is not None]
    assert lines and max(lines) > 100  # real line numbers, not a stripped table
    columns = {(start, end) for code in codes for _, _, start, end in code.co_positions()}
    assert columns == {(None, None)}


def test_base_library_has_only_the_encodings_the_init_may_use() -> None:
    """The encodings the zip holds are freeze.ENCODINGS: the boot reads the zip's directory
    before its first import, and each codec more is an entry more."""
    base = freeze.ONEDIR / "_internal" / "base_library.zip"
    if not base.exists():
        pytest.fail(f"{base} missing: run `doit init` first")
    with zipfile.ZipFile(base) as z:
        encodings = {name.split("/")[1].removesuffix(".pyc") for name in z.namelist()
                     if name.startswith("encodings/")}
    assert encodings == {"__init__", *freeze.ENCODINGS}
