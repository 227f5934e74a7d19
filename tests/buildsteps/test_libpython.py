"""The frozen init's libpython: Debian's, linked again from its PIC archive without the built-in
modules the init never imports, so that the UKI and the guest's RAM do not carry them."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from onebuild import elfdeps, freeze, libpython

pytestmark = pytest.mark.host

CONFIG_C = """\
extern PyObject* PyInit_unicodedata(void);
extern PyObject* PyInit_math(void);
struct _inittab _PyImport_Inittab[] = {
    {"unicodedata", PyInit_unicodedata},
    {"math", PyInit_math},
    {0, 0}
};
"""


def test_config_c_loses_the_dropped_modules_rows_and_declarations() -> None:
    trimmed = libpython.config_c(CONFIG_C, dropped=("unicodedata",))
    assert "unicodedata" not in trimmed
    assert 'extern PyObject* PyInit_math(void);' in trimmed
    assert '{"math", PyInit_math},' in trimmed and "{0, 0}" in trimmed


def test_module_objects_reads_which_member_defines_each_module() -> None:
    nm = ("/x/libpython3.11-pic.a:unicodedata.o:0000000000003c10 T PyInit_unicodedata\n"
          "/x/libpython3.11-pic.a:unicodedata.o:0000000000000010 t helper\n"
          "/x/libpython3.11-pic.a:spwdmodule.o:0000000000000200 T PyInit_spwd\n"
          "/x/libpython3.11-pic.a:spwdmodule.o:\n")
    assert libpython.module_objects(nm) == {"unicodedata": "unicodedata.o",
                                            "spwd": "spwdmodule.o"}


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("libpython") / libpython.SONAME
    libpython.link(lib)
    return lib


def _dynamic_symbols(lib: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_the_trimmed_library_has_no_dropped_module_and_needs_no_libexpat(trimmed: Path) -> None:
    symbols = _dynamic_symbols(trimmed)
    assert not {f"PyInit_{name}" for name in libpython.DROPPED} & symbols
    assert {"PyInit_math", "PyInit__socket", "Py_Initialize", "PyUnicode_FromString"} <= symbols
    assert set(elfdeps.read(trimmed).needed) <= {"libc.so.6", "libm.so.6", "libz.so.1"}
    debian = Path(sys.base_prefix) / "lib" / "x86_64-linux-gnu" / libpython.SONAME
    if debian.exists():
        print(f"{debian.stat().st_size} -> {trimmed.stat().st_size} bytes")
        assert trimmed.stat().st_size < debian.stat().st_size - 1_000_000


def test_the_trimmed_library_runs_python_without_the_dropped_modules(trimmed: Path) -> None:
    """The system interpreter on the trimmed library: it starts, imports what the init imports,
    and the dropped modules are gone (not merely unused)."""
    code = ("import sys, socket, ssl, zlib, math, hashlib, json, asyncio, _datetime\n"
            "assert 'unicodedata' not in sys.builtin_module_names\n"
            "for name in ('unicodedata', 'pyexpat', '_pickle'):\n"
            "    try:\n"
            "        __import__(name)\n"
            "    except ImportError:\n"
            "        continue\n"
            "    raise SystemExit(f'{name} still importable')\n"
            "print('ok')\n")
    # Debian's python3.11 has libpython linked in statically: Python's own main (python.o),
    # linked against the trimmed library, is the interpreter that loads it.
    python = trimmed.parent / "python"
    main = Path(str(sysconfig.get_config_var("LIBPL"))) / "python.o"
    subprocess.run(["gcc", "-o", str(python), str(main), str(trimmed),
                    f"-Wl,-rpath,{trimmed.parent}"], check=True)
    # -I: the interpreter finds Debian's stdlib through its built-in prefix, /usr.
    result = subprocess.run([str(python), "-I", "-S", "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_the_frozen_tree_carries_the_trimmed_library() -> None:
    internal = freeze.ONEDIR / "_internal"
    if not internal.is_dir():
        pytest.fail(f"{freeze.ONEDIR} missing: run `doit init` first")
    lib = internal / libpython.SONAME
    assert "PyInit_unicodedata" not in _dynamic_symbols(lib)
    assert not (internal / "libexpat.so.1").exists()
