"""The frozen init's bytecode: line numbers for tracebacks, no column ranges (they are what the
module archive compresses worst, see onebuild/freeze.py)."""

from __future__ import annotations

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
