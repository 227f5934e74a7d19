"""The precompiled-code table the frozen init carries (init/precompiled.py explains why).

A child interpreter, with the optimization level of the frozen init, imports what the init imports
while init.precompiled records every text dataclasses and collections hand to `exec`/`eval`; each
is compiled once more and stored, in the order first seen (init.precompiled.Table). The child has a
fixed hash seed and writes no bytecode caches: the table is the same bytes on every build, and the
source tree stays as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import CodeType

# Nothing more at the top: the child records what the frozen init makes after importing
# init.precompiled, so it must not have imported more than that when it starts recording (a
# module imported earlier would have made its classes unrecorded).
from init import precompiled

# The frozen init's optimization level (PyInstaller --optimize, freeze.py): the texts are the
# same at every level, and the code must be what that interpreter compiles.
OPTIMIZE = 2


def build(out: Path, modules: Sequence[str]) -> int:
    """Write the table for what importing `modules` creates to `out`; returns its entries."""
    import os

    from onebuild import paths
    from onebuild.tools import BuildError, run

    env = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(paths.ROOT)}
    tmp = out.with_suffix(".tmp")
    run([sys.executable, "-" + "O" * OPTIMIZE, "-m", "onebuild.precompile", str(tmp), *modules],
        env=env, quiet=True)
    entries = len(precompiled.Table.unpack(tmp.read_bytes()))
    if not entries:
        raise BuildError(f"importing {', '.join(modules)} compiled no generated code: "
                         "has dataclasses stopped calling exec?")
    os.replace(tmp, out)
    return entries


def _record(out: Path, modules: Sequence[str]) -> None:
    import importlib

    if sys.flags.optimize != OPTIMIZE:
        raise SystemExit(f"run with -{'O' * OPTIMIZE}: the table must match the frozen init")
    seen: dict[tuple[str, str], None] = {}

    def record(mode: str, source: str) -> CodeType:
        seen[(mode, source)] = None
        return precompiled.compile_text(mode, source)

    precompiled.shadow(record)
    for module in modules:
        importlib.import_module(module)
    precompiled.unshadow()
    out.write_bytes(precompiled.Table.pack(seen))


if __name__ == "__main__":
    _record(Path(sys.argv[1]), sys.argv[2:])
