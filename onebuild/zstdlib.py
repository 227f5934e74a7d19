"""A decompression-only libzstd for the frozen init, linked from Debian's static libzstd.

The guest only decompresses (zstd image layers). Linking the static library with just the entry
points the init's binding calls (init/services/image/zstd.py declares them), unused sections
dropped and only those symbols exported, leaves the compressor out. Measured with Debian 12's
libzstd 1.5.4: 240 KB stripped, ~100 KB in the zstd squashfs, against python-zstandard's C
backend (a whole zstd): 960 KB, ~370 KB.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from onebuild import archivelink, paths
from onebuild.tools import BuildError, step

STATIC_LIB = Path("/usr/lib/x86_64-linux-gnu/libzstd.a")
STATIC_LIB_PACKAGE = "libzstd-dev"
BINDING = paths.ROOT / "init" / "services" / "image" / "zstd.py"
OUT_DIR = paths.TARGET / "zstd"


def binding() -> ModuleType:
    """The init's binding, loaded from its file alone (it imports only the standard library):
    it names the library and the symbols the library must export."""
    spec = importlib.util.spec_from_file_location("mvirt_one_zstd_binding", BINDING)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot load {BINDING}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def output(out_dir: Path = OUT_DIR) -> Path:
    """Where the library is built (target/zstd/<the binding's LIBRARY>)."""
    return out_dir / str(binding().LIBRARY)


def build(out_dir: Path = OUT_DIR) -> None:
    """Link output() from STATIC_LIB, exporting exactly the binding's SYMBOLS."""
    static_lib = archivelink.archive(STATIC_LIB, STATIC_LIB_PACKAGE)
    symbols: tuple[str, ...] = binding().SYMBOLS
    out = output(out_dir)
    with step(f"Linking {out.name} (libzstd's decompressor alone)"):
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        archivelink.link(
            tmp, out.name, inputs=[static_lib],
            version_script="{ global: " + " ".join(f"{s};" for s in symbols) + " local: *; };\n",
            entry_points=symbols, flags=["-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"])
        os.replace(tmp, out)
