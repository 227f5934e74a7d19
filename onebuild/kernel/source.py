"""The kernel source for kernel.version: found, verified and unpacked into kernel/.

A tarball is taken from, in order: the one given (KERNEL_TARBALL or `doit kernel --tarball`),
target/, Debian's linux-source package, or a download from kernel.org checked against its
sha256sums. Each must hold exactly the pinned version. The unpacked tree carries a stamp naming
the tarball, so it is unpacked again only when the source changes.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onebuild import paths, tools
from onebuild.kernel import patches
from onebuild.tools import BuildError

KERNEL_ORG = "https://cdn.kernel.org/pub/linux/kernel"
# version -> sha256 of linux-VERSION.tar.xz, for versions someone has verified by hand. Without an
# entry, a download is checked against kernel.org's sha256sums.asc fetched alongside it.
PINNED_SHA256: dict[str, str] = {}
DEBIAN_SRC = Path("/usr/src")  # where `apt-get install linux-source-X.Y` puts its tarball

VERSION_FILE = paths.ROOT / "kernel.version"
STAMP_NAME = ".mvirt-one-source"  # in the unpacked tree: which tarball and version it holds

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


def tarball_fingerprint(tarball: str) -> str:
    """What identifies a KERNEL_TARBALL choice cheaply (path, size, mtime) for doit's up-to-date
    check; "" when none is given (the source then follows kernel.version)."""
    if not tarball:
        return ""
    path = Path(tarball).expanduser().resolve()
    try:
        st = path.stat()
    except OSError:
        return f"{path} missing"
    return f"{path} {st.st_size} {st.st_mtime_ns}"


def _stamp(source: Source, version: str) -> str:
    record = {"version": version, "identity": source.identity, "tarball": str(source.tarball),
              "patches": patches.identity()}
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def _stamp_matches(tree: Path, source: Source, version: str) -> bool:
    try:
        record = json.loads((tree / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return bool(record.get("version") == version and record.get("identity") == source.identity
                and record.get("patches", "") == patches.identity())


def unpack(source: Source, version: str, *, tree: Path | None = None) -> Path:
    """Unpack `source` into kernel/ and apply kernel.patches/, unless the stamp says it is
    already there.

    The stamp is written last, so an interrupted unpack is redone; a different version,
    tarball or set of patches replaces the whole tree (its build/ directory with it).
    """
    tree = tree or paths.KERNEL_TREE
    if _stamp_matches(tree, source, version):
        return tree
    with tools.step(f"Unpacking kernel {version} from {source.tarball} ({source.origin})"):
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        tools.run(["tar", "-xf", source.tarball, "-C", tree, "--strip-components=1"])
        patches.apply(tree)
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
