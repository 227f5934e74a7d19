"""Freeze the Python init with PyInstaller.

Two routes: `--onedir`, a tree that the initramfs carries as is and that starts fastest; and
`--onefile` + staticx, one static ELF (`target/mvirt-one`) for users who want a single binary,
which unpacks itself into /tmp (RAM) at every start. The onedir tree is the default in the
initramfs; the README has the figures of both.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from init import precompiled
from onebuild import elfdeps, openssllib, paths, precompile, reproducible, zstdlib
from onebuild.tools import BuildError, run, step

ENTRY = paths.ROOT / "init" / "__main__.py"
ENTRY_MODULE = "init.__main__"
NAME = "init"
ONEDIR = paths.TARGET / "init"  # the onedir tree: ONEDIR/NAME is the executable
STATIC = paths.TARGET / "mvirt-one"
HOOKS = Path(__file__).resolve().parent / "pyinstaller_hooks"  # see its rthooks.dat

# Modules the init never uses; PyInstaller would otherwise follow optional imports into them.
EXCLUDES = (
    "tkinter", "pydoc", "pydoc_data", "doctest", "lib2to3", "distutils",
    "setuptools", "pip", "sqlite3", "xmlrpc", "curses", "readline", "idlelib", "ensurepip",
    "venv", "turtle", "turtledemo", "test", "multiprocessing.popen_spawn_win32", "bz2",
    "lzma", "_bz2", "_lzma", "dbm", "mailbox", "imaplib", "smtplib", "ftplib", "nntplib",
    "telnetlib", "pdb", "profile", "cProfile", "pstats", "timeit", "trace", "tracemalloc",
    "grpc", "grpc_tools", "pytest", "hypothesis", "doit", "pefile", "elftools", "PyInstaller",
    "onebuild", "onectl", "pyroute2.ndb", "pyroute2.ipdb", "pyroute2.nftables",
    "pyroute2.ipset", "pyroute2.wiset", "pyroute2.remote", "pyroute2.nslink",
    "pyroute2.cli", "pyroute2.conntrack", "pyroute2.iwutil", "pyroute2.inotify",
    "pyroute2.plan9",
    # pyroute2 parts for other platforms and netlink families the init never speaks; only
    # functions the init does not call import them.
    "pyroute2.iproute.bsd", "pyroute2.iproute.darwin", "pyroute2.iproute.windows", "pyroute2.bsd",
    "pyroute2.ethtool", "pyroute2.netlink.nl80211", "pyroute2.netlink.nfnetlink",
    "pyroute2.netlink.diag", "pyroute2.netlink.devlink", "pyroute2.netlink.taskstats",
    "pyroute2.netlink.connector", "pyroute2.ipvs",
    # Of pyroute2 the init imports only the DHCP client, with the package __init__ files and the
    # rtnl stack replaced (init/net/pyroute2_light.py): what only those __init__ files import
    # stays out, and with it the stdlib that only pyroute2's rtnl used.
    "pyroute2.iproute", "pyroute2.netlink.rtnl", "pyroute2.netlink.event",
    "pyroute2.netlink.generic", "pyroute2.netlink.nlsocket", "pyroute2.netlink.core",
    "pyroute2.netlink.coredata", "pyroute2.netlink.marshal", "pyroute2.netlink.rt_files",
    "pyroute2.netlink.ipq", "pyroute2.netlink.uevent", "pyroute2.requests", "pyroute2.netns",
    "pyroute2.process", "pyroute2.statsd", "pyroute2.config", "pyroute2.devlink",
    "multiprocessing", "concurrent.futures.process", "unittest", "difflib",
    "decimal", "_decimal", "_pydecimal", "statistics", "fractions",
    # East-Asian codecs: 1 MB of extension modules the init never decodes with.
    "_codecs_jp", "_codecs_kr", "_codecs_cn", "_codecs_tw", "_codecs_hk", "_codecs_iso2022",
    "_multibytecodec",
    # Imported by nothing the init runs (the guest serves gRPC and pulls with http.client):
    # Windows' event loops, grpclib's client and the typing_extensions only it needs,
    # multidict's pure-Python twin of its C extension, importlib.metadata/resources (and the
    # zipfile and csv only they import), pickle, pprint, and the email modules behind its newer
    # policies (http.client parses headers with the compat32 one).
    "asyncio.windows_events", "asyncio.windows_utils", "asyncio.proactor_events",
    "grpclib.client", "typing_extensions", "multidict._multidict_py",
    "importlib.metadata", "importlib.resources", "zipfile", "csv", "pickle", "_compat_pickle",
    "pprint", "email._header_value_parser", "email.headerregistry", "email.contentmanager",
    "email.generator", "email.policy",
    # The API's messages go through init/api/wire.py: protobuf is the host's (onectl, tests).
    "google.protobuf", "google._upb", "oneproto.one_pb2", "oneproto.one_grpc",
)

# The text encodings the init can be asked for: its own text (UTF-8, ASCII), HTTP headers
# (Latin-1), JSON's UTF-16/32 detection, host names (IDNA, Punycode), the escapes and charmap
# Python's own code uses, and bytes-to-bytes base64/hex. The other ~100 modules of the encodings
# package stay out of base_library.zip (the East-Asian ones cannot work anyway: their C modules
# are excluded above): the boot reads the zip's directory before its first import, and READY
# came 0.1 s sooner with 54 entries instead of 155 (direct boots, median of 9, interleaved). An
# encoding the init lacks is a LookupError that names it.
ENCODINGS = ("aliases", "ascii", "utf_8", "utf_8_sig", "latin_1", "iso8859_1", "utf_16",
             "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be", "idna", "punycode",
             "raw_unicode_escape", "unicode_escape", "charmap", "undefined", "base64_codec",
             "hex_codec")


def _unused_encodings() -> list[str]:
    import encodings
    import pkgutil

    return [f"encodings.{m.name}" for m in pkgutil.iter_modules(encodings.__path__)
            if m.name not in ENCODINGS]


# Imported lazily by our own code (inside functions) on the way to READY: listed for PyInstaller's
# analysis, and for the precompiled code (precompile.py) of what they define.
BOOT_IMPORTS = (
    # pyroute2_light imports it by name, as pyroute2.iproute.linux.
    "init.net.pyroute2_iproute",
    # The boot phases import their modules when they run (init/app.py, init/net/interface.py).
    "init.system.datadisk",
    "init.net.loopback",
    "init.net.boot",
    "init.net.dhcp4",
    "init.net.ipv6.dhcp6",
    "pyroute2.dhcp.client",
    "init.services.image.service",
    "init.services.pod.service",
    # The API is imported when it starts (init/api/server.py).
    "init.api.service",
    "init.api.gate",
    "init.api.ready",
    "init.net.netinfo",
    "grpclib.server",
    "oneproto.one_service",
    "oneproto.one_msgs",
)
# Imported lazily after READY: the image service loads its puller (http.client, tarfile, zstd) on
# the first pull.
LATER_IMPORTS = ("init.services.image.puller",)


def _pyinstaller(mode: str, dist: Path, work: Path) -> None:
    argv: list[str] = [
        sys.executable, "-m", "PyInstaller",
        "--noconfirm", "--clean", "--log-level", "WARN",
        f"--{mode}",
        "--name", NAME,
        "--distpath", str(dist),
        "--workpath", str(work),
        "--specpath", str(work),
        "--paths", str(paths.ROOT),
        "--additional-hooks-dir", str(HOOKS),
        "--strip",
        # Bytecode without docstrings and asserts (python -OO): smaller and less to unmarshal.
        # The init reads no docstring at run time (argparse descriptions are the host tools').
        "--optimize", "2",
    ]
    for module in (*EXCLUDES, *_unused_encodings()):
        argv += ["--exclude-module", module]
    for module in (*BOOT_IMPORTS, *LATER_IMPORTS):
        argv += ["--hidden-import", module]
    # The zstd binding loads it from the bundle's top directory (sys._MEIPASS).
    argv += ["--add-binary", f"{zstdlib.output()}:."]
    # The generated code of the dataclasses and named tuples the init makes (init/precompiled.py).
    table = work.parent / precompiled.TABLE_NAME  # PyInstaller's --clean empties `work`
    table.parent.mkdir(parents=True, exist_ok=True)
    precompile.build(table, [ENTRY_MODULE, *BOOT_IMPORTS])
    argv += ["--add-data", f"{table}:."]
    argv.append(str(ENTRY))
    # A fixed hash seed makes the marshalled code (set/frozenset order) the same on every build.
    # No column ranges in the bytecode's location tables (python -X no_debug_ranges): tracebacks
    # keep their line numbers and lose the ^^^ markers, and the module archive compresses ~30 %
    # smaller, since those tables are what compresses worst.
    env = {"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": str(reproducible.epoch()),
           "PYTHONNODEBUGRANGES": "1"}
    if mode == "onedir":
        # The onedir tree ends up in the compressed /usr image (initramfs.py), which compresses
        # the module archive as a whole far better than zlib does entry by entry: store it
        # uncompressed (level 0), which also spares each import an inflate.
        env["PYINSTALLER_ZLIB_COMPRESSION_LEVEL"] = "0"
    run(argv, env=env)


def freeze_onedir() -> None:
    """target/init/: the onedir tree (executable `init` + `_internal/`)."""
    out = ONEDIR
    work = paths.TARGET / "freeze-onedir"  # removed when done: not an output
    with step("Freezing the init (PyInstaller --onedir)"):
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        _pyinstaller("onedir", work / "dist", work / "build")
        openssllib.replace(work / "dist" / NAME / "_internal")
        os.replace(work / "dist" / NAME, out)
        shutil.rmtree(work, ignore_errors=True)


def freeze_static() -> None:
    """target/mvirt-one: one static ELF (PyInstaller --onefile, then staticx)."""
    out = STATIC
    work = paths.TARGET / "freeze-onefile"
    with step("Freezing the init as one static ELF (PyInstaller --onefile + staticx)"):
        shutil.rmtree(work, ignore_errors=True)
        _pyinstaller("onefile", work / "dist", work / "build")
        # staticx bundles the dynamic libraries and rejects those carrying DT_RUNPATH.
        run([sys.executable, "-m", "staticx", "--strip", str(work / "dist" / NAME), str(out)],
            env={"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
        shutil.rmtree(work, ignore_errors=True)
        out.chmod(0o755)
        info = elfdeps.read(out)
        if not info.is_static:
            raise BuildError(f"{out} is not static: interpreter {info.interp}, needs {info.needed}")
