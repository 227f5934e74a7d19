"""Memory figures the init reports at READY: its own RSS and what the guest has left; and the
block size of free page reporting, which gives the host back the memory the guest frees."""

from __future__ import annotations

from pathlib import Path

# Free page reporting (the virtio balloon onectl adds, free-page-reporting=on) reports free blocks
# of 2^order pages. The kernel's default order is pageblock_order, 10 (4 MiB) without hugetlbfs,
# and it reports nothing while a zone has less than 32 such blocks free above its low watermark:
# 128 MiB, more than a small VM has at all, so nothing would ever go back. Linux 6.1 ignores the
# command line's page_reporting.page_reporting_order (the balloon's probe overwrites it), so the
# init sets it once the driver is there. Order 5 (128 KiB): reporting goes on while 4 MiB more
# than the low watermark are free, and takes at most 4 MiB off the free lists at a time.
REPORTING_ORDER = 5
REPORTING_ORDER_PARAM = Path("/sys/module/page_reporting/parameters/page_reporting_order")


def _kib(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_kib() -> int | None:
    return _kib("/proc/meminfo", "MemAvailable")


def total_kib() -> int | None:
    return _kib("/proc/meminfo", "MemTotal")


def summary() -> str:
    rss = _kib("/proc/self/status", "VmRSS")
    available = _kib("/proc/meminfo", "MemAvailable")
    total = _kib("/proc/meminfo", "MemTotal")
    parts = []
    if rss is not None:
        parts.append(f"rss {rss / 1024:.1f} MiB")
    if available is not None and total is not None:
        parts.append(f"memory available {available / 1024:.1f} of {total / 1024:.1f} MiB")
    return ", ".join(parts) or "memory figures unavailable"


def set_reporting_order(order: int = REPORTING_ORDER, param: Path = REPORTING_ORDER_PARAM) -> bool:
    """False when the kernel has no free page reporting (raises OSError if it refuses)."""
    if not param.exists():
        return False
    param.write_text(f"{order}\n")
    return True
