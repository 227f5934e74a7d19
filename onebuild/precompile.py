"""The precompiled-code table the frozen init carries (init/precompiled.py explains why).

A child interpreter, with the optimization level of the frozen init, imports what the init imports
while init.precompiled records every text dataclasses and collections hand to `exec`/`eval` and
every pattern re compiles; each is compiled once more and stored, in the order first seen
(init.precompiled.Table). The child has a
fixed hash seed and writes no bytecode caches: the table is the same bytes on every build, and the
source tree stays as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Nothing more at the top (not even pathlib, which imports urllib.parse and its named tuples and
# patterns): the child records what the frozen init makes after importing init.precompiled, so it
# must not have imported more than that when it starts recording (a module imported earlier
# would have made its classes and patterns unrecorded).
from init import precompiled

if TYPE_CHECKING:
    from pathlib import Path
    from types import CodeType

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
        raise BuildError(f"importing {', '.join(modules)} compiled no generated code and no "
                         "pattern: has dataclasses stopped calling exec?")
    os.replace(tmp, out)
    return entries


def _record(out: str, modules: Sequence[str]) -> None:
    import importlib

    if sys.flags.optimize != OPTIMIZE:
        raise SystemExit(f"run with -{'O' * OPTIMIZE}: the table must match the frozen init")
    seen: dict[tuple[str, str | bytes], None] = {}

    def record(mode: str, source: str) -> CodeType:
        seen[(mode, source)] = None
        return precompiled.compile_text(mode, source)

    def record_regex(pattern: str | bytes, flags: int) -> precompiled.RegexParts:
        parts = precompiled.regex_parts(pattern, flags)
        seen[(f"{precompiled.REGEX_MODE}{flags}", pattern)] = None
        return parts

    precompiled.shadow(record, record_regex)
    for module in modules:
        importlib.import_module(module)
    precompiled.unshadow()
    with open(out, "wb") as f:
        f.write(precompiled.Table.pack(seen))


if __name__ == "__main__":
    _record(sys.argv[1], sys.argv[2:])
