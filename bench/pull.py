"""Pull benchmark: our image service against `skopeo copy` + `umoci unpack`, same image, same run.

A loopback docker-registry serves the Debian minbase image the tests build (debootstrap, cached
under ~/.cache/mvirt-one/fixtures). Each round starts from an empty store / empty directory:
- ours: a fresh Python process pulls and unpacks with ImageService (what the init does);
- baseline: `skopeo copy docker://… oci:DIR` then `umoci unpack` (Go tools, the reference).
Wall time (median of N) and peak RSS (getrusage of each child, via wait4) are written to
target/bench/pull.json. Not a test: figures depend on the machine; the ratio is what compares.

    .venv/bin/python -m bench.pull [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onebuild import paths
from tests.fixtures.images import build
from tests.fixtures.images.registry import Registry
from tests.fixtures.tools import tool

OURS = """
import asyncio, sys
from pathlib import Path
from init.services.image import ImageService
service = ImageService(Path(sys.argv[1]))
image = asyncio.run(service.pull(sys.argv[2]))
print(image.digest)
"""


def timed(argv: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one child process, which must succeed."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4, not Popen.wait: it returns the child's own rusage (ru_maxrss), not a running total.
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return elapsed, usage.ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    reg = Registry.start(work / "registry")
    try:
        print("building the Debian image (debootstrap tree cached)...", flush=True)
        tree = build.debian_tree()
        layout = work / "layout"
        build.umoci_image(layout, "bookworm", [build.copy_tree(tree)],
                          ["--config.cmd", "/bin/bash"])
        build.skopeo_push(layout, "bookworm", reg.address, "debian:bookworm")
        ref = f"{reg.address}/debian:bookworm"
        skopeo, umoci = tool("skopeo", "skopeo"), tool("umoci", "umoci")
        ours: list[float] = []
        base: list[float] = []
        ours_rss = base_rss = 0
        for n in range(args.rounds):
            data = work / f"ours{n}"
            t, rss = timed([sys.executable, "-c", OURS, str(data), ref])
            ours.append(t)
            ours_rss = max(ours_rss, rss)
            shutil.rmtree(data)
            oci, bundle = work / f"oci{n}", work / f"bundle{n}"
            t1, rss1 = timed([skopeo, "copy", "--quiet", "--src-tls-verify=false",
                              f"docker://{ref}", f"oci:{oci}:bookworm"])
            t2, rss2 = timed([umoci, "unpack", "--image", f"{oci}:bookworm", str(bundle)])
            base.append(t1 + t2)
            base_rss = max(base_rss, rss1, rss2)
            shutil.rmtree(oci)
            shutil.rmtree(bundle)
            print(f"round {n + 1}: ours {ours[-1]:.2f} s, skopeo+umoci {base[-1]:.2f} s",
                  flush=True)
        layer_bytes = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
        result = {
            "image": "debian bookworm minbase (debootstrap), one gzip layer",
            "image_blob_bytes": layer_bytes,
            "rounds": args.rounds,
            "ours_seconds_median": round(statistics.median(ours), 3),
            "baseline_seconds_median": round(statistics.median(base), 3),
            "ratio_ours_to_baseline": round(statistics.median(ours) / statistics.median(base), 2),
            "ours_peak_rss_mib": round(ours_rss / 1024, 1),
            "baseline_peak_rss_mib": round(base_rss / 1024, 1),
            "ours_seconds": [round(t, 3) for t in ours],
            "baseline_seconds": [round(t, 3) for t in base],
        }
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = paths.TARGET / "bench" / "pull.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
