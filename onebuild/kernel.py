"""The kernel: kernel.version + kernel.config → target/bzImage, cached outside the clone.

Flow: find a source tarball → unpack it to kernel/ → `.config` = tinyconfig + kernel.config +
olddefconfig, checked so nothing requested was dropped → `make bzImage` in kernel/build/ → store
under a key of every input in the cache → copy into target/. A cache hit skips all but the copy.

Objects go to kernel/build/ (O=build), not into the source tree: the source stays pristine, so
tests and scratch configurations can use their own O= directory without touching the real build,
and kbuild names sources relative to the tree (`..`), so the clone's path never reaches the image.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from onebuild import paths, tools
from onebuild.tools import BuildError

# Bump when a change below alters what a build produces, so old cache entries are not reused.
RECIPE_VERSION = 1
ARCH = "x86_64"  # the fragment and the UKI stub are x86-64 only
KERNEL_ORG = "https://cdn.kernel.org/pub/linux/kernel"
# version -> sha256 of linux-VERSION.tar.xz, for versions someone has verified by hand. Without an
# entry, a download is checked against kernel.org's sha256sums.asc fetched alongside it.
PINNED_SHA256: dict[str, str] = {}
DEBIAN_SRC = Path("/usr/src")  # where `apt-get install linux-source-X.Y` puts its tarball

VERSION_FILE = paths.ROOT / "kernel.version"
FRAGMENT_FILE = paths.ROOT / "kernel.config"
STAMP_NAME = ".mvirt-one-source"  # in the unpacked tree: which tarball and version it holds
BUILD_SUBDIR = "build"  # kbuild's O= inside the tree (kbuild then refers to sources as `..`)
OUTPUTS = ("bzImage", "kernel.release", "kernel.config")
MENUCONFIG_HEADER = "# added by menuconfig"

_SET = re.compile(r"^(CONFIG_\w+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")
_MAKEFILE_VAR = re.compile(
    r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=[ \t]*(\S*)", re.MULTILINE
)
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?(-rc\d+)?$")


@dataclass(frozen=True)
class Source:
    """A kernel source tarball and what identifies its contents (for the stamp and cache key)."""

    tarball: Path
    identity: str  # "sha256:<hex>" or "debian:<package>=<version>"
    origin: str  # for messages: where it was found


# --- version -------------------------------------------------------------------------------


def kernel_version() -> str:
    """The pinned kernel version (kernel.version), e.g. "6.1.192"."""
    version = VERSION_FILE.read_text().strip()
    if not _VERSION.match(version):
        raise BuildError(f"{VERSION_FILE.name}: {version!r} is not a kernel version like 6.1.192")
    return version


def makefile_version(makefile: str) -> str:
    """The version a kernel Makefile declares; kernel.org drops a zero sublevel (linux-6.1)."""
    fields: dict[str, str] = dict(_MAKEFILE_VAR.findall(makefile))
    if "VERSION" not in fields or "PATCHLEVEL" not in fields:
        raise BuildError("not a kernel Makefile: no VERSION/PATCHLEVEL")
    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields.get("SUBLEVEL", "0") not in ("", "0"):
        version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def tarball_version(tarball: Path) -> str:
    """Read the top-level Makefile out of a source tarball without unpacking the rest.

    The stream is read only up to the Makefile (about 2 s for a 140 MB .tar.xz), which is enough
    to tell whether e.g. Debian's linux-source-6.1 is the pinned point release.
    """
    try:
        with tarfile.open(tarball, "r|*") as archive:
            for member in archive:
                parts = member.name.removeprefix("./").split("/")
                if len(parts) == 2 and parts[1] == "Makefile" and member.isfile():
                    data = archive.extractfile(member)
                    if data is not None:
                        return makefile_version(data.read().decode(errors="replace"))
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        raise BuildError(f"{tarball}: cannot read it as a tarball ({err})") from err
    raise BuildError(f"{tarball}: no top-level Makefile, so not a kernel source tarball")


# --- source --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def debian_tarball(version: str) -> Path:
    """Debian ships one tarball per X.Y series: /usr/src/linux-source-6.1.tar.xz."""
    series = ".".join(version.split(".")[:2])
    return DEBIAN_SRC / f"linux-source-{series}.tar.xz"


def downloaded_tarballs(version: str) -> list[Path]:
    """Tarballs of this version already in target/ (downloaded earlier, or put there by hand)."""
    names = [f"linux-{version}.tar{suffix}" for suffix in ("", ".xz", ".gz", ".bz2")]
    return [paths.TARGET / name for name in names if (paths.TARGET / name).is_file()]


def debian_package_version(tarball: Path) -> str | None:
    """The package and version that installed `tarball`, e.g. "linux-source-6.1=6.1.192-2".

    Used as the source's identity when dpkg owns the file: cheaper than hashing 140 MB.
    """
    try:
        owner = tools.output(["dpkg-query", "-S", str(tarball)]).split(":")[0]
        version = tools.output(["dpkg-query", "-W", "-f=${Version}", owner])
    except BuildError:
        return None
    return f"{owner}={version}" if owner and version else None


def _checked(tarball: Path, version: str, origin: str) -> Source:
    """A Source for `tarball` after making sure it holds the pinned version."""
    if not tarball.is_file():
        raise BuildError(f"kernel tarball {tarball} ({origin}) does not exist")
    found = tarball_version(tarball)
    if found != version:
        raise BuildError(
            f"{tarball} ({origin}) holds kernel {found}, but kernel.version pins {version}: "
            f"give a linux-{version} tarball or change kernel.version"
        )
    return Source(tarball, f"sha256:{sha256_file(tarball)}", origin)


def _debian_source(version: str, notes: list[str]) -> Source | None:
    tarball = debian_tarball(version)
    if not tarball.is_file():
        notes.append(f"{tarball} is not installed")
        return None
    found = tarball_version(tarball)
    if found != version:
        notes.append(f"{tarball} holds {found}, not {version}")
        return None
    # The Debian package version names the exact contents (Debian's patches included).
    package = debian_package_version(tarball)
    identity = f"debian:{package}" if package else f"sha256:{sha256_file(tarball)}"
    return Source(tarball, identity, "Debian linux-source")


def parse_sha256sums(text: str, name: str) -> str | None:
    """The sha256 listed for `name` in a sha256sums(.asc) file; the PGP armour is ignored."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == name and re.fullmatch(r"[0-9a-f]{64}", fields[0]):
            return fields[0]
    return None


def download(version: str) -> Path:
    """Fetch linux-VERSION.tar.xz from kernel.org into target/, verified before it is kept."""
    major = version.split(".")[0]
    name = f"linux-{version}.tar.xz"
    base = f"{KERNEL_ORG}/v{major}.x"
    dest = paths.TARGET / name
    partial = dest.with_name(name + ".part")
    paths.TARGET.mkdir(parents=True, exist_ok=True)
    curl = ["curl", "--fail", "--silent", "--show-error", "--location", "--retry", "2"]
    tools.run([*curl, "--output", str(partial), f"{base}/{name}"])
    expected = PINNED_SHA256.get(version)
    if expected is None:
        sums = partial.with_name("sha256sums.asc.part")
        tools.run([*curl, "--output", str(sums), f"{base}/sha256sums.asc"])
        expected = parse_sha256sums(sums.read_text(errors="replace"), name)
        sums.unlink()
        if expected is None:
            partial.unlink()
            raise BuildError(f"{base}/sha256sums.asc does not list {name}")
    got = sha256_file(partial)
    if got != expected:
        partial.unlink()
        raise BuildError(f"{name} from kernel.org has sha256 {got}, expected {expected}")
    partial.rename(dest)
    return dest


def _no_source(version: str, notes: Sequence[str]) -> BuildError:
    series = ".".join(version.split(".")[:2])
    return BuildError(
        f"no source for kernel {version} ({'; '.join(notes)}). Either:\n"
        f"  - name a tarball: KERNEL_TARBALL=/path/to/linux-{version}.tar.xz make kernel\n"
        f"    (or `doit kernel --tarball PATH`, or put it at target/linux-{version}.tar.xz)\n"
        f"  - install Debian's: apt-get install linux-source-{series} "
        f"(if Debian ships {version})\n"
        f"  - allow HTTPS to cdn.kernel.org so the tarball can be downloaded"
    )


def find_source(tarball: str = "") -> Source:
    """The source tarball for kernel.version: given > target/ > Debian's > kernel.org."""
    version = kernel_version()
    given = tarball or os.environ.get("KERNEL_TARBALL", "")
    if given:
        return _checked(Path(given).expanduser().resolve(), version, "given tarball")
    if downloaded := downloaded_tarballs(version):
        return _checked(downloaded[0], version, "target/")
    notes: list[str] = []
    debian = _debian_source(version, notes)
    if debian is not None:
        return debian
    try:
        fetched = download(version)
    except BuildError as err:
        notes.append(f"download failed: {str(err).splitlines()[0]}")
        raise _no_source(version, notes) from err
    return _checked(fetched, version, "kernel.org")


def _stamp(source: Source, version: str) -> str:
    record = {"version": version, "identity": source.identity, "tarball": str(source.tarball)}
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def _stamp_matches(tree: Path, source: Source, version: str) -> bool:
    try:
        record = json.loads((tree / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return bool(record.get("version") == version and record.get("identity") == source.identity)


def unpack(source: Source, version: str, *, tree: Path | None = None) -> Path:
    """Unpack `source` into kernel/ unless the stamp says it is already there.

    The stamp is written last, so an interrupted unpack is redone; a different version or
    tarball replaces the whole tree (its build/ directory with it).
    """
    tree = tree or paths.KERNEL_TREE
    if _stamp_matches(tree, source, version):
        return tree
    with tools.step(f"Unpacking kernel {version} from {source.tarball} ({source.origin})"):
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        tools.run(["tar", "-xf", source.tarball, "-C", tree, "--strip-components=1"])
        (tree / STAMP_NAME).write_text(_stamp(source, version))
    return tree


def ensure_source(tarball: str = "") -> Path:
    """The unpacked tree for kernel.version (unpacking it first if needed)."""
    return unpack(find_source(tarball), kernel_version())


def remove_source() -> None:
    """For distclean: the unpacked tree (with its objects) and tarballs downloaded to target/."""
    shutil.rmtree(paths.KERNEL_TREE, ignore_errors=True)
    for leftover in paths.TARGET.glob("linux-*.tar.*"):
        leftover.unlink()


# --- configuration -------------------------------------------------------------------------


def parse_config(text: str) -> dict[str, str]:
    """Kconfig lines as {"CONFIG_X": value}; `# CONFIG_X is not set` is "n", the rest ignored.

    A symbol that appears twice keeps its last value, as kconfig and merge_config.sh do.
    """
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _SET.match(line):
            options[match[1]] = match[2]
        elif match := _UNSET.match(line):
            options[match[1]] = "n"
    return options


def format_option(symbol: str, value: str) -> str:
    return f"# {symbol} is not set" if value == "n" else f"{symbol}={value}"


def dropped_options(
    wanted: Mapping[str, str], got: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """{symbol: (wanted, got)} for every requested value the final config does not have.

    A symbol missing from the final config is "n": kconfig omits symbols whose dependencies are
    off, which is exactly the case this check is for.
    """
    return {
        symbol: (value, got.get(symbol, "n"))
        for symbol, value in wanted.items()
        if got.get(symbol, "n") != value
    }


def check_config(wanted: Mapping[str, str], got: Mapping[str, str]) -> None:
    dropped = dropped_options(wanted, got)
    if dropped:
        lines = [f"  {symbol}: wanted {w}, got {g}" for symbol, (w, g) in sorted(dropped.items())]
        raise BuildError(
            "kconfig dropped options kernel.config asks for (a dependency is off, or the symbol "
            "does not exist in this kernel); enable what they depend on or remove them:\n"
            + "\n".join(lines)
        )


def _make_env() -> dict[str, str]:
    # KCONFIG_CONFIG pinned: a value left in the user's environment would redirect every step.
    # LOCALVERSION set (even empty) stops setlocalversion from appending "+" inside a git checkout.
    return {"ARCH": ARCH, "KCONFIG_CONFIG": ".config", "LOCALVERSION": ""}


def _make_argv(tree: Path, objdir: Path, *targets: str) -> list[str | os.PathLike[str]]:
    # Absolute O= so it means the same from any cwd; kbuild still sees a subdirectory of the tree
    # (kernel/build) and then refers to sources as `..`, keeping the clone's path out of the image.
    return ["make", "--no-print-directory", "-C", tree.resolve(), f"O={objdir.resolve()}", *targets]


def _make(
    tree: Path,
    objdir: Path,
    *targets: str,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
) -> None:
    argv = _make_argv(tree, objdir, *targets)
    tools.run(argv, env={**_make_env(), **(env or {})}, capture=capture)


def generate_config(tree: Path, objdir: Path, fragment: Path) -> dict[str, str]:
    """objdir/.config = tinyconfig + `fragment` + olddefconfig; returns it parsed (unchecked)."""
    objdir = objdir.resolve()
    objdir.mkdir(parents=True, exist_ok=True)
    # tinyconfig merges its own fragments and narrates every override: noise unless it fails
    _make(tree, objdir, "-s", "tinyconfig", capture=True)
    # -m: only merge; olddefconfig below then fills in what the fragment made visible.
    tools.run(
        [
            tree / "scripts/kconfig/merge_config.sh",
            "-m",
            "-O",
            objdir,
            ".config",
            fragment.resolve(),
        ],
        cwd=objdir,
        env=_make_env(),
        capture=True,
    )
    _make(tree, objdir, "-s", "olddefconfig")
    return parse_config((objdir / ".config").read_text())


def configure(tree: Path, objdir: Path, fragment: Path = FRAGMENT_FILE) -> dict[str, str]:
    """generate_config, then fail if any option the fragment sets did not survive."""
    got = generate_config(tree, objdir, fragment)
    check_config(parse_config(fragment.read_text()), got)
    return got


# --- menuconfig: fold interactive changes back into kernel.config ---------------------------


def changed_options(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """{symbol: new value} for every symbol whose value differs; absent counts as "n"."""
    symbols = sorted(set(old) | set(new))
    return {s: new.get(s, "n") for s in symbols if old.get(s, "n") != new.get(s, "n")}


def set_options(fragment_text: str, changes: Mapping[str, str]) -> str:
    """Rewrite the fragment's lines for `changes` in place; append the rest under a header."""
    out: list[str] = []
    done: set[str] = set()
    for line in fragment_text.splitlines():
        symbol = next(iter(parse_config(line)), "")
        if symbol in changes:
            out.append(format_option(symbol, changes[symbol]))
            done.add(symbol)
        else:
            out.append(line)
    new = {s: v for s, v in changes.items() if s not in done}
    if new:
        if MENUCONFIG_HEADER not in (line.strip() for line in out):
            if out and out[-1].strip():
                out.append("")
            out.append(MENUCONFIG_HEADER)
        out.extend(format_option(s, v) for s, v in sorted(new.items()))
    return "\n".join(out) + "\n"


def fold_back(fragment_text: str, old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """The fragment with the edit old → new (two full .configs) written into it.

    Written are changed symbols the fragment names, and those present in both configs (visible
    before and after the edit). A symbol only in `new` became visible through the edit (a new
    submenu, a `select`) and usually just takes its default, so it is left to kconfig;
    apply_config_edit regenerates and pins the ones that do not. A symbol only in `old` lost a
    dependency: implied, unless the fragment names it (the build would report it dropped).
    """
    mentioned = parse_config(fragment_text)
    changes = {
        s: v
        for s, v in changed_options(old, new).items()
        if s in mentioned or (s in old and s in new)
    }
    return set_options(fragment_text, changes)


def apply_config_edit(
    tree: Path, objdir: Path, fragment: Path, edit: Callable[[Path], None], *, rounds: int = 5
) -> dict[str, str]:
    """Let `edit` change objdir/.config, then fold the change into `fragment`.

    `edit` is menuconfig for users and scripts/config in tests. The fold-back is re-checked by
    regenerating from the new fragment: where tinyconfig + fragment + olddefconfig still differs
    from the edited config (a default that depends on the edit, say), that value is pinned too,
    until the fragment reproduces the edit. Returns what changed in the fragment.
    """
    config = objdir / ".config"
    old = parse_config(config.read_text())
    edit(config)
    # After menuconfig this changes nothing; after scripts/config it resolves dependencies.
    _make(tree, objdir, "-s", "olddefconfig")
    new = parse_config(config.read_text())
    original = fragment.read_text()
    text = fold_back(original, old, new)
    candidate = objdir / "kernel.config.candidate"
    try:
        for _ in range(rounds):
            candidate.write_text(text)
            got = generate_config(tree, objdir, candidate)
            folded = fold_back(text, got, new)
            if folded == text:
                break
            text = folded
        else:
            raise BuildError(f"menuconfig: no fragment reproduced the edit in {rounds} rounds")
    finally:
        candidate.unlink(missing_ok=True)
    check_config(parse_config(text), got)
    fragment.write_text(text)
    return changed_options(parse_config(original), parse_config(text))


def menuconfig(tarball: str = "") -> None:
    """Edit the kernel configuration in menuconfig; the changes land in kernel.config."""
    tree = ensure_source(tarball)
    objdir = tree / BUILD_SUBDIR
    # Start from exactly what kernel.config gives, so the diff is the user's edit only.
    configure(tree, objdir)
    changes = apply_config_edit(
        tree, objdir, FRAGMENT_FILE, lambda _config: _make(tree, objdir, "menuconfig")
    )
    if not changes:
        print("menuconfig: no changes; kernel.config untouched")
        return
    print(f"menuconfig: wrote {len(changes)} option(s) to kernel.config:")
    for symbol, value in changes.items():
        print(f"  {format_option(symbol, value)}")


# --- build and cache -----------------------------------------------------------------------


def build_epoch() -> int:
    """The time stamped into the kernel: SOURCE_DATE_EPOCH, else the last commit that touched
    kernel.version or kernel.config (not HEAD, so unrelated commits keep the cache key), else
    the last commit, else 0."""
    if value := os.environ.get("SOURCE_DATE_EPOCH"):
        return int(value)
    inputs = [VERSION_FILE.name, FRAGMENT_FILE.name]
    for pathspec in (["--", *inputs], []):
        try:
            stamp = tools.output(["git", "log", "-1", "--format=%ct", *pathspec], cwd=paths.ROOT)
        except BuildError:
            return 0
        if stamp:
            return int(stamp)
    return 0


def build_env(epoch: int) -> dict[str, str]:
    """What kbuild would otherwise take from the clock, the user and the host: fixed values."""
    return {
        # `date`'s own format, which kbuild's tools parse back with `date -d`
        "KBUILD_BUILD_TIMESTAMP": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(epoch)),
        "KBUILD_BUILD_USER": "mvirt",
        "KBUILD_BUILD_HOST": "mvirt-one",
        "KBUILD_BUILD_VERSION": "1",  # else a counter in build/.version grows with each build
    }


def toolchain() -> list[str]:
    """The compiler and linker, as they identify themselves: both shape the bytes of bzImage."""
    return [
        tools.output(["gcc", "--version"]).splitlines()[0],
        tools.output(["ld", "--version"]).splitlines()[0],
    ]


def key_inputs(version: str, source: Source, epoch: int, fragment_text: str) -> list[str]:
    return [
        f"recipe {RECIPE_VERSION} {ARCH}",
        f"version {version}",
        f"source {source.identity}",
        f"epoch {epoch}",
        *toolchain(),
        "kernel.config:",
        fragment_text,
    ]


def cache_key(inputs: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()


def cache_entry(key: str) -> Path:
    return paths.cache_dir() / "kernel" / key


def _complete(entry: Path) -> bool:
    return all((entry / name).is_file() for name in OUTPUTS)


def compile_kernel(tree: Path, objdir: Path, epoch: int) -> None:
    jobs = os.environ.get("KERNEL_JOBS") or str(os.cpu_count() or 1)
    _make(tree, objdir, f"-j{jobs}", "bzImage", env=build_env(epoch))


def store(entry: Path, tree: Path, objdir: Path, inputs: Sequence[str]) -> None:
    """Put a finished build into the cache; a temp dir renamed into place, so readers (and a
    build killed halfway) never see half an entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{entry.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copyfile(objdir / "arch/x86/boot/bzImage", tmp / "bzImage")
    release = tools.output(_make_argv(tree, objdir, "-s", "kernelrelease"), env=_make_env())
    (tmp / "kernel.release").write_text(release + "\n")
    shutil.copyfile(objdir / ".config", tmp / "kernel.config")
    (tmp / "inputs.txt").write_text("\n".join(inputs) + "\n")
    try:
        tmp.rename(entry)
    except OSError:  # another build stored the same key first; its bytes are the same
        shutil.rmtree(tmp)


def install(entry: Path) -> None:
    """Copy a cache entry's files into target/ (each replaced atomically)."""
    paths.TARGET.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        tmp = paths.TARGET / f".{name}.tmp"
        shutil.copyfile(entry / name, tmp)
        tmp.replace(paths.TARGET / name)


def build(tarball: str = "") -> None:
    """Build target/bzImage (+ kernel.release, kernel.config), or take it from the cache."""
    version = kernel_version()
    source = find_source(tarball)
    epoch = build_epoch()
    fragment_text = FRAGMENT_FILE.read_text()
    inputs = key_inputs(version, source, epoch, fragment_text)
    entry = cache_entry(cache_key(inputs))
    if _complete(entry):
        print(f"kernel {version}: cache hit {entry}")
    else:
        tree = unpack(source, version)
        objdir = tree / BUILD_SUBDIR
        with tools.step(f"Configuring kernel {version} (tinyconfig + kernel.config)"):
            configure(tree, objdir)
        with tools.step(f"Building kernel {version} bzImage"):
            compile_kernel(tree, objdir, epoch)
        store(entry, tree, objdir, inputs)
        print(f"kernel {version}: stored in cache {entry}")
    install(entry)
