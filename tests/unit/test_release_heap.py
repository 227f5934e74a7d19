"""release_free_heap gives the pages glibc keeps after frees back to the kernel: measured on the
process's own RSS, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.fixtures.paths import ROOT


def test_freed_heap_below_a_live_block_leaves_the_rss() -> None:
    code = textwrap.dedent("""
        from init.system import libc

        def anon_kb():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])

        # 4 KiB blocks come from the heap (not mmap); the last one pins its top, so glibc
        # cannot give the freed blocks below it back by itself.
        blocks = [bytearray(4000) for _ in range(20000)]
        pin = bytearray(4000)
        del blocks
        before = anon_kb()
        assert libc.release_free_heap()
        print(before - anon_kb())
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 50_000, result.stdout  # of the ~80 MB freed, in KiB
