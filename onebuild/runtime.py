"""The OCI runtime shipped in the initramfs: a static crun built from Debian's source, or yours.

Default: crun from bookworm's source package, compiled against Debian's static libraries
(libseccomp, libcap, yajl, glibc) into one static ELF, so the initramfs needs no shared libraries
for it (1.7 MB stripped, ~760 KB gzipped). A static binary needs no loader, which the check below
verifies with pyelftools: no PT_INTERP, no DT_NEEDED.

Built binaries are cached outside the clone (`cache_dir()/runtime/<key>/crun`) under a key of all
their inputs, so a fresh CI clone skips the build. `RUNTIME=/path/to/binary` (doit `--runtime`)
ships that binary instead, e.g. a youki or runc you bring yourself.

Output: `target/runtime/<name>` and `target/runtime/runtime.json`, which the initramfs step reads
to install the binary at `path_in_initramfs`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from onebuild import cache, paths
from onebuild.cache import atomic_write
from onebuild.hosttools import PrivateApt, bookworm_source_lines
from onebuild.tools import BuildError, output, run, step

# Bump when the build recipe below changes in a way that changes the binary: it is part of the key.
RECIPE_VERSION = 2
SOURCE_PACKAGE = "crun"
# Debian's static archives the binary is linked from; their versions are part of the cache key.
STATIC_LIB_PACKAGES = ("libc6-dev", "libseccomp-dev", "libcap-dev", "libyajl-dev")
# Debian ships yajl's static archive under another name than `-lyajl` looks for.
YAJL_STATIC = Path("/usr/lib/x86_64-linux-gnu/libyajl_s.a")
CONFIGURE_ARGS = (
    "--disable-shared",
    "--enable-static",
    # No libsystemd (the guest has no systemd), no criu (checkpointing), no dlopen (the wasm and
    # libkrun handlers it loads cannot exist in the initramfs; static dlopen only warns anyway).
    "--disable-systemd",
    "--disable-criu",
    "--disable-dl",
    # crun links libgcrypt when it finds it; it only speeds up a hash we do not need.
    "ac_cv_search_gcry_check_version=no",
)
INITRAMFS_BIN_DIR = "/usr/bin"

OUT = paths.TARGET / "runtime"
RUNTIME_JSON = OUT / "runtime.json"


@dataclass(frozen=True)
class SourcePackage:
    """The crun source package apt would fetch: its .dsc file name, version and hash."""

    dsc: str
    version: str  # Debian version without epoch, e.g. 1.8.1-1+deb12u1
    dsc_sha256: str

    @property
    def upstream_version(self) -> str:
        return self.version.rsplit("-", 1)[0]


# --- public -------------------------------------------------------------------------------------


def build(runtime: str = "", *, out_dir: Path = OUT) -> None:
    """Put the OCI runtime into `out_dir`: `runtime` (a binary path), else the static crun."""
    if runtime:
        binary = _user_binary(runtime)
        problems = static_elf_problems(binary)
        if problems:
            # Allowed (the initramfs step may copy its libraries), but say so loudly.
            print(f"warning: {binary} is not static: {'; '.join(problems)}", file=sys.stderr)
        _install(binary, out_dir, name=binary.name, source=str(binary), static=not problems)
        return
    crun, source = build_static_crun()
    _install(crun, out_dir, name="crun", source=source, static=True)


def runtime_info(out_dir: Path = OUT) -> dict[str, Any]:
    """target/runtime/runtime.json: name, path_in_initramfs, source, sha256 and static."""
    path = out_dir / RUNTIME_JSON.name
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise BuildError(f"{path} is missing: build the runtime first (`make runtime`)") from None
    return info


def runtime_binary(out_dir: Path = OUT) -> Path:
    """The runtime binary in target/runtime/, as named by runtime.json."""
    return out_dir / str(runtime_info(out_dir)["name"])


def choice_fingerprint(runtime: str = "") -> str:
    """A value for doit's config_changed: changes when the RUNTIME choice or its file changes."""
    if not runtime:
        return f"crun recipe {RECIPE_VERSION}"
    path = Path(runtime).expanduser()
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return f"{runtime} {digest}"


def build_static_crun() -> tuple[Path, str]:
    """The stripped static crun from the cache, built on a miss; and a line naming its source."""
    apt = PrivateApt(paths.cache_dir() / "apt" / "bookworm-src", tuple(bookworm_source_lines()))
    with step("Looking up crun's source package in Debian"):
        apt.update()
        source = _source_package(apt)
    entry = cache_entry(source)
    description = f"debian:{SOURCE_PACKAGE} {source.version} (static, recipe {RECIPE_VERSION})"

    def build_into(dest: Path) -> None:
        with step(f"Building a static crun {source.version} (cache miss, key {entry.key[:12]})"):
            _build_into(apt, source, dest / "crun")

    if entry.obtain(build_into):
        print(f"‣ static crun {source.version}: cached ({entry.path})", file=sys.stderr)
    return entry.path / "crun", description


def static_elf_problems(path: Path) -> list[str]:
    """Why `path` is not a static ELF executable: empty when it is (no PT_INTERP, no DT_NEEDED)."""
    with path.open("rb") as f:
        try:
            elf = ELFFile(f)
        except ELFError:
            return [f"{path} is not an ELF file"]
        problems = []
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                problems.append(f"has a loader ({segment.get_interp_name()})")
            if isinstance(segment, DynamicSegment):
                # pyelftools sets .needed on DT_NEEDED tags only, so its types do not know it.
                tags = segment.iter_tags("DT_NEEDED")
                needed = [str(tag.needed) for tag in tags]  # type: ignore[attr-defined]
                if needed:
                    problems.append(f"needs shared libraries {', '.join(needed)}")
        return problems


def cache_entry(source: SourcePackage) -> cache.Entry:
    """The cache entry of a static crun: source, static libraries, toolchain and recipe."""
    inputs = {
        "dsc_sha256": source.dsc_sha256,
        "static_libs": output(
            ["dpkg-query", "-W", "-f", "${Package}=${Version}\n", *STATIC_LIB_PACKAGES]
        ).splitlines(),
        "toolchain": cache.toolchain(),
        "configure": list(CONFIGURE_ARGS),
        "recipe": RECIPE_VERSION,
    }
    return cache.Entry("runtime", inputs, ("crun",))


# --- the crun build -------------------------------------------------------------------------------


def _source_package(apt: PrivateApt) -> SourcePackage:
    """Ask apt which crun source it would fetch (the highest version across the suites)."""
    text = apt.apt_get(["source", "--print-uris", SOURCE_PACKAGE], cwd=apt.root, capture=True)
    # Lines look like: 'URL' crun_1.8.1-1+deb12u1.dsc 2367 SHA256:<hex>
    match = re.search(r"^'[^']+' (\S+_(\S+)\.dsc) \d+ SHA256:([0-9a-f]{64})$", text, re.MULTILINE)
    if match is None:
        raise BuildError(
            f"apt found no {SOURCE_PACKAGE} source package in {apt.sources_list}: "
            "is the Debian mirror reachable (see `apt-get update` above)?"
        )
    return SourcePackage(dsc=match[1], version=match[2], dsc_sha256=match[3])


def _build_into(apt: PrivateApt, source: SourcePackage, dest: Path) -> None:
    work = paths.cache_dir() / "runtime" / "work"
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    # apt checks every file against the signed index, and skips files it already has.
    apt.apt_get(["source", "--download-only", f"{SOURCE_PACKAGE}={source.version}"], cwd=downloads)
    tree = work / f"{SOURCE_PACKAGE}-{source.version}"
    shutil.rmtree(tree, ignore_errors=True)  # never build on top of a half-built tree
    # apt already checked the .dsc against the signed index, so dpkg-source's "cannot verify
    # inline signature" (no Debian developer keyring here) is harmless. --no-copy: the orig
    # tarball stays in downloads/ only.
    run(["dpkg-source", "--no-copy", "-x", downloads / source.dsc, tree])
    binary = _compile(tree, work / "lib")
    _check_static_crun(binary, source)
    run(["objcopy", "--strip-all", binary, dest])
    shutil.rmtree(tree)  # kept only when the build failed, to look into


def _compile(tree: Path, libdir: Path) -> Path:
    """configure + make just crun (no docs, tests or libcrun.so); -j1: others share the CPU."""
    _link_static_yajl(libdir)
    _write_git_version(tree)
    # Debian's own hardening and reproducibility flags (-ffile-prefix-map keeps paths out).
    hardening = {"DEB_BUILD_MAINT_OPTIONS": "hardening=+all"}
    env = {
        name: output(["dpkg-buildflags", "--get", name], cwd=tree, env=hardening)
        for name in ("CFLAGS", "CPPFLAGS")
    }
    # Each function and object in its own section, and the unused ones dropped at link time:
    # most of libocispec's generated parsers handle OCI fields crun never reads.
    env["CFLAGS"] += " -ffunction-sections -fdata-sections"
    # libocispec regenerates its C parsers with Python: use ours, not whatever `python` is on PATH.
    env["PYTHON"] = sys.executable
    ldflags = f"-Wl,-z,relro -Wl,-z,now -Wl,--gc-sections -L{libdir}"
    run(["./configure", *CONFIGURE_ARGS, f"LDFLAGS=-static {ldflags}"], cwd=tree, env=env)
    # libtool drops a plain -static from the final link; -all-static is its word for "really".
    run(["make", "-j1", "crun", f"LDFLAGS=-all-static {ldflags}"], cwd=tree, env=env)
    return tree / "crun"


def _link_static_yajl(libdir: Path) -> None:
    """Debian's libyajl-dev ships libyajl_s.a; the linker looks for libyajl.a."""
    if not YAJL_STATIC.is_file():
        raise BuildError(f"{YAJL_STATIC} not found: install it with `apt-get install libyajl-dev`")
    libdir.mkdir(parents=True, exist_ok=True)
    link = libdir / "libyajl.a"
    link.unlink(missing_ok=True)
    link.symlink_to(YAJL_STATIC)


def _write_git_version(tree: Path) -> None:
    """`make crun` does not generate git-version.h (only `make all` does): write it by hand."""
    shipped = tree / ".tarball-git-version.h"
    match = re.search(r'GIT_VERSION "([^"]*)"', shipped.read_text()) if shipped.exists() else None
    commit = match[1] if match else "unknown"
    (tree / "git-version.h").write_text(
        f'#ifndef GIT_VERSION\n# define GIT_VERSION "{commit}"\n#endif\n'
    )


def _check_static_crun(binary: Path, source: SourcePackage) -> None:
    problems = static_elf_problems(binary)
    if problems:
        raise BuildError(f"the crun build is not static: {'; '.join(problems)} ({binary})")
    first = output([binary, "--version"]).splitlines()[0]
    if first != f"crun version {source.upstream_version}":
        raise BuildError(f"{binary} --version says {first!r}, expected {source.upstream_version}")


# --- output ---------------------------------------------------------------------------------------


def _user_binary(runtime: str) -> Path:
    """Resolve RUNTIME: a path to an executable file (a bare name is looked up on PATH)."""
    path = Path(runtime).expanduser()
    if not path.exists() and os.sep not in runtime:
        found = shutil.which(runtime)
        path = Path(found) if found else path
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BuildError(
            f"RUNTIME={runtime}: not an executable file; give the path of an OCI runtime binary "
            "(e.g. RUNTIME=/usr/local/bin/youki) or leave RUNTIME empty to build the static crun"
        )
    # Absolute, but a symlink keeps its own name (e.g. runc -> runc.amd64 still ships as runc).
    path = Path(os.path.abspath(path))
    if static_elf_problems(path) == [f"{path} is not an ELF file"]:
        raise BuildError(f"RUNTIME={runtime}: {path} is not an ELF binary")
    return path


def _install(binary: Path, out_dir: Path, *, name: str, source: str, static: bool) -> None:
    """Make `out_dir` hold just `binary` as `name` and its runtime.json (written last)."""
    data = binary.read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    # A runtime chosen earlier must not linger beside this one; runtime.json goes too and comes
    # back last, so it never names a binary that is not there.
    for old in out_dir.iterdir():
        if old.name != name and old.is_file():
            old.unlink()
    atomic_write(out_dir / name, data, mode=0o755)
    info = {
        "name": name,
        "path_in_initramfs": f"{INITRAMFS_BIN_DIR}/{name}",
        "source": source,
        "sha256": hashlib.sha256(data).hexdigest(),
        "static": static,
    }
    atomic_write(out_dir / RUNTIME_JSON.name, (json.dumps(info, indent=2) + "\n").encode())
    print(
        f"‣ runtime: {out_dir / name} ({len(data)} bytes) -> {info['path_in_initramfs']}",
        file=sys.stderr,
    )
