"""The one place that runs external tools.

Every subprocess of the build goes through `run()`, so a missing tool gets one clear message naming
the Debian package that provides it, and a failing tool shows the command that failed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

# tool -> Debian package that provides it (the bootstrap installs these; see scripts/bootstrap.sh)
PROVIDERS: dict[str, str] = {
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "pahole": "dwarves",
    "cpio": "cpio",
    "xz": "xz-utils",
    "zstd": "zstd",
    "gzip": "gzip",
    "tar": "tar",
    "objcopy": "binutils",
    "mkfs.ext4": "e2fsprogs",
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-source": "dpkg-dev",
    "patchelf": "patchelf",
    "patch": "patch",
    "autoreconf": "autoconf",
    "pkg-config": "pkg-config",
    "curl": "curl",
    "dpkg-buildflags": "dpkg-dev",
    "dpkg-query": "dpkg",
    "ld": "binutils",
    "unshare": "util-linux",
    "git": "git",
    "musl-gcc": "musl-tools",
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
}


class BuildError(RuntimeError):
    """A build step failed in a way the user can act on; the message says how."""


class MissingTool(BuildError):
    pass


def find_tool(name: str, *, extra_dirs: Sequence[Path] = ()) -> Path:
    """Locate `name` on PATH (plus the venv's bin and `extra_dirs`), or explain where to get it."""
    search = [str(d) for d in extra_dirs] + [str(Path(sys.executable).parent)]
    search += os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]
    found = shutil.which(name, path=os.pathsep.join(search))
    if found is None:
        package = PROVIDERS.get(name)
        hint = f"install it with `apt-get install {package}`" if package else "install it"
        raise MissingTool(f"{name} not found: {hint} (or run `make bootstrap`)")
    return Path(found)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    input: bytes | None = None,
    check: bool = True,
    quiet: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; argv[0] is resolved with find_tool so a missing tool is reported clearly."""
    args = [os.fspath(a) for a in argv]
    if os.sep not in args[0]:
        args[0] = str(find_tool(args[0]))
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if not quiet:
        print(f"+ {shlex.join(args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        input=input,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if check and proc.returncode != 0:
        detail = ""
        if capture and proc.stderr:
            detail = "\n" + proc.stderr.decode(errors="replace").strip()[-4000:]
        raise BuildError(f"command failed ({proc.returncode}): {shlex.join(args)}{detail}")
    return proc


def output(argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run a tool and return its stdout as text."""
    proc = run(argv, capture=True, quiet=True, **kwargs)  # type: ignore[arg-type]
    return proc.stdout.decode().strip()


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a readable progress line around a build step, with its duration."""
    print(f"‣ {title}", file=sys.stderr, flush=True)
    start = time.monotonic()
    yield
    print(f"  done in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
