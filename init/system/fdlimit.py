"""The init's open-file limit. The kernel starts PID 1 at 1024: ~500 followed logs (each stream
holds a file) left CreatePod no descriptor for its runtime call. The API bounds what clients may
hold (init/api/gate.py: connections x streams, far below this), so the rest stays the init's own.
"""

from __future__ import annotations

import resource

WANTED = 1 << 16


def raise_limit(wanted: int = WANTED) -> tuple[int, int]:
    """Raise the soft limit to `wanted` (and the hard one, when permitted and lower);
    returns the limits now in force. Never raises: a limit it cannot raise stays."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    new_soft = max(soft, wanted if new_hard == resource.RLIM_INFINITY else min(wanted, new_hard))
    for limits in ((new_soft, new_hard), (min(new_soft, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)
