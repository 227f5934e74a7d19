"""Shared libraries linked from Debian's static archives, exporting only what their users call.

Given the entry points a library's users import, the linker pulls from the archives just the
members that define them (`-u`), drops the sections nothing reaches (`--gc-sections`), and the
version script keeps every other symbol local. zstdlib and openssllib build their libraries so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from onebuild.tools import BuildError, run


def archive(path: Path, package: str) -> Path:
    """`path`, a static archive of the Debian package `package`, checked to be there."""
    if not path.is_file():
        raise BuildError(f"{path} not found: install it with `apt-get install {package}` "
                         "(or run `make bootstrap`)")
    return path


def link(dest: Path, soname: str, *, inputs: Sequence[str | os.PathLike[str]],
         version_script: str, entry_points: Iterable[str], flags: Sequence[str]) -> None:
    """Link the shared library `dest` (stripped) from `inputs` (archives, libraries), exporting
    what `version_script` names and taking from the archives what `entry_points` need."""
    with tempfile.TemporaryDirectory(prefix="archivelink-") as work:
        script = Path(work) / "exports.map"
        script.write_text(version_script)
        argv: list[str | os.PathLike[str]] = [
            "gcc", "-shared", "-s", "-o", dest, f"-Wl,-soname,{soname}", "-Wl,--gc-sections",
            f"-Wl,--version-script={script}", *flags]
        # -u makes the linker take the members that define the symbols from the archive.
        argv += [f"-Wl,-u,{name}" for name in entry_points]
        argv += inputs
        run(argv, quiet=True)
