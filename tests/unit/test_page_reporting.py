"""The init sets free page reporting's block size where the kernel has it (meminfo.py says why)."""

from __future__ import annotations

from pathlib import Path

from init.system import meminfo


def test_the_order_is_written_where_the_kernel_reports_free_pages(tmp_path: Path) -> None:
    param = tmp_path / "page_reporting_order"
    param.write_text("10\n")
    assert meminfo.set_reporting_order(param=param) is True
    assert param.read_text() == f"{meminfo.REPORTING_ORDER}\n"
    # 32 blocks must be free above the low watermark for the kernel to report any: a small VM
    # has that (the kernel's default, 32 blocks of 4 MiB, is all of a 128 MiB VM).
    assert (32 << meminfo.REPORTING_ORDER) * 4096 <= 8 << 20


def test_a_kernel_without_page_reporting_is_left_alone(tmp_path: Path) -> None:
    assert meminfo.set_reporting_order(param=tmp_path / "absent") is False
    assert not (tmp_path / "absent").exists()
