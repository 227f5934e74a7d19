"""/init of the initramfs: a small static C program (preinit/preinit.c) that mounts the
compressed /usr image and execs the Python init, so the init stays PID 1.

Built with musl (a 30 KB static binary; glibc's static runtime alone is ~800 KB, and every byte
of /init stays in RAM). The paths it uses are compiled in from the initramfs layout, which
onebuild/initramfs.py declares.
"""

from __future__ import annotations

from pathlib import Path

from onebuild import paths
from onebuild.tools import run

SOURCE = paths.ROOT / "preinit" / "preinit.c"
CFLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-std=gnu11")


def _c_string(value: str) -> str:
    if any(c in value for c in '"\\\n'):
        raise ValueError(f"{value!r}: not a plain path")
    return f'"{value}"'


def build(out: Path, *, image: str, mount_point: str, init: str) -> None:
    """Compile the preinit to `out`; the three paths are absolute paths in the guest."""
    defines = {"IMAGE": image, "MOUNT_POINT": mount_point, "INIT": init}
    for name, value in defines.items():
        if not value.startswith("/"):
            raise ValueError(f"{name}={value!r}: must be an absolute path in the guest")
    argv: list[str] = ["musl-gcc", *CFLAGS]
    argv += [f"-D{name}={_c_string(value)}" for name, value in defines.items()]
    argv += ["-o", str(out), str(SOURCE)]
    run(argv, quiet=True)
    out.chmod(0o755)
