"""A libpython without the built-in modules the init never imports.

Debian builds some extension modules into libpython itself (config.c's table), among them
unicodedata (1.1 MB of Unicode tables), pyexpat (which also pulls in libexpat) and _elementtree.
The frozen tree would carry them in the UKI and in RAM for nothing. Debian also ships the same
objects as a position-independent archive (libpython3.11-pic.a, package libpython3.11-dev): a
library linked from it, minus those modules' objects and with a config.c that no longer names
them, is the same interpreter, ABI and all, ~1.4 MB smaller.

Without unicodedata the stdlib's "idna" codec cannot load (stringprep needs it); the init
registers an ASCII-only one instead (init/system/idna.py): host names in image references are
ASCII by the distribution spec's grammar.
"""

from __future__ import annotations

import re
import sysconfig
import tempfile
from pathlib import Path

from onebuild.tools import BuildError, output, run

SONAME = "libpython3.11.so.1.0"
# Built-in modules left out: nothing the init runs imports them (a frozen test checks that the
# init imports none of them, and the pull, API and network paths run in the frozen tests).
DROPPED = ("unicodedata", "pyexpat", "_elementtree", "_pickle", "_csv", "_statistics", "cmath",
           "spwd", "syslog", "xxsubtype")
# The frozen init imports these; loading one from the trimmed library must keep working.
_INIT_RE = re.compile(r"PyInit_(\w+)")


def _libpl() -> Path:
    return Path(str(sysconfig.get_config_var("LIBPL")))


def archive() -> Path:
    """Debian's position-independent libpython archive (libpython3.11-dev)."""
    path = _libpl() / "libpython3.11-pic.a"
    if not path.is_file():
        raise BuildError(f"{path} not found: install python3-dev (libpython3.11-dev)")
    return path


def config_c(text: str, dropped: tuple[str, ...] = DROPPED) -> str:
    """config.c without the declarations and table rows of `dropped`."""
    kept = []
    for line in text.splitlines():
        name = _module_named(line)
        if name is not None and name in dropped:
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _module_named(line: str) -> str | None:
    match = re.search(r'PyInit_(\w+)\(void\)|\{"([\w.]+)", PyInit_', line)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def module_objects(nm_output: str) -> dict[str, str]:
    """module name -> archive member defining its PyInit_ (from `nm -A --defined-only`)."""
    found: dict[str, str] = {}
    for line in nm_output.splitlines():
        # "/usr/lib/.../libpython3.11-pic.a:unicodedata.o:0000000000003c10 T PyInit_unicodedata"
        fields = line.split()
        if len(fields) != 3 or fields[1] != "T":
            continue
        match = _INIT_RE.fullmatch(fields[2])
        if match:
            found[match[1]] = fields[0].rsplit(":", 2)[-2]
    return found


def link(dest: Path, dropped: tuple[str, ...] = DROPPED) -> None:
    """Write the trimmed library to `dest` (its soname is Debian's)."""
    source = archive()
    owners = module_objects(output(["nm", "-A", "--defined-only", source]))
    missing = [name for name in dropped if name not in owners]
    if missing:
        raise BuildError(f"{source.name} has no built-in module {', '.join(missing)}: "
                         "onebuild/libpython.py DROPPED no longer matches Debian's libpython")
    skip = {owners[name] for name in dropped} | {"config.o"}
    include = str(sysconfig.get_paths()["include"])
    with tempfile.TemporaryDirectory(prefix="libpython-") as tmp:
        work = Path(tmp)
        run(["ar", "x", source], cwd=work, quiet=True)
        (work / "config_trimmed.c").write_text(config_c((_libpl() / "config.c").read_text(),
                                                        dropped))
        run(["gcc", "-O2", "-fPIC", "-DPy_BUILD_CORE", f"-I{include}", "-c",
             "config_trimmed.c", "-o", "config_trimmed.o"], cwd=work)
        members = [m for m in output(["ar", "t", source]).split() if m not in skip]
        # --no-undefined: a kept object that needed a dropped one fails here, not at boot.
        run(["gcc", "-shared", "-o", dest, f"-Wl,-soname,{SONAME}", "-Wl,-O1",
             "-Wl,--no-undefined", "-Wl,--as-needed", "-Wl,-z,relro", "-Wl,--build-id=sha1",
             *members, "config_trimmed.o", "-lm", "-lz"], cwd=work, quiet=True)
    run(["strip", "--strip-unneeded", dest])
