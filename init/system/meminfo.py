"""Memory figures the init reports at READY: its own RSS and what the guest has left."""

from __future__ import annotations


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
