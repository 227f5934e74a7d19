"""Host tools the VM tests need that Debian bookworm lacks, and private access to Debian's archive.

vhost-device-vsock (the daemon behind qemu's hybrid vsock, which `onectl run` uses) exists only
in sid. Its sid build needs nothing newer than bookworm's glibc, so we fetch the .deb with apt-get
against a *private* sources list and index directory and unpack it into the cache: sid is never
added to the system's apt sources and nothing is installed system-wide.

`PrivateApt` is that private apt, shared with runtime.py (which fetches crun's source package the
same way). The mirror's address is read from the machine's own apt configuration at run time; it is
never written into the repository.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from onebuild import paths
from onebuild.cache import atomic_write, file_lock
from onebuild.tools import BuildError, output, run, step

# deb822 sources of the machine (Debian 12 writes its mirrors here).
SYSTEM_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Set to a mirror URL (e.g. the one in your sources.list) where debian.sources does not exist.
MIRROR_ENV = "MVIRT_ONE_DEBIAN_MIRROR"

VSOCK_PACKAGE = "vhost-device-vsock"


# --- the machine's Debian sources -------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    """One deb822 stanza of the system's sources (only the fields we reuse)."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str

    def lines(self, kind: str) -> list[str]:
        """This stanza as one-line entries of `kind` ("deb" or "deb-src")."""
        components = " ".join(self.components)
        options = f"[signed-by={self.signed_by}]"
        return [
            f"{kind} {options} {uri} {suite} {components}"
            for uri in self.uris
            for suite in self.suites
        ]


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Parse deb822 text into dicts (lower-case keys; continuation lines folded in)."""
    fields: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def system_sources(path: Path | None = None) -> list[AptSource]:
    """The enabled `deb` stanzas of the system's debian.sources (or of `path`)."""
    path = path or SYSTEM_SOURCES
    if not path.is_file():
        raise BuildError(
            f"{path} not found, so the Debian mirror is unknown: "
            f"set {MIRROR_ENV}=<mirror URL, as in your apt sources>"
        )
    sources = []
    for fields in _deb822_stanzas(path.read_text()):
        types = tuple(fields.get("types", "").split())
        if "deb" not in types or fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by", "")
        # An inline key block cannot go into a one-line entry; Debian's own keyring signs it all.
        signed_by = signed_by if signed_by.startswith("/") else DEBIAN_KEYRING
        sources.append(
            AptSource(
                types=types,
                uris=tuple(fields.get("uris", "").split()),
                suites=tuple(fields.get("suites", "").split()),
                components=tuple(fields.get("components", "main").split()),
                signed_by=signed_by,
            )
        )
    return sources


def debian_mirror() -> str:
    """The main archive's mirror URL: $MVIRT_ONE_DEBIAN_MIRROR, else the system's debian.sources."""
    override = os.environ.get(MIRROR_ENV, "").strip()
    if override:
        return override
    for source in system_sources():
        # The main archive carries the plain release suite; -security/-updates live elsewhere or
        # beside it, so a suite without a dash picks the right stanza.
        if any("-" not in suite for suite in source.suites) and source.uris:
            return source.uris[0]
    raise BuildError(
        f"no main Debian archive (a suite such as `bookworm`) in {SYSTEM_SOURCES}: "
        f"set {MIRROR_ENV}=<mirror URL>"
    )


def bookworm_source_lines() -> list[str]:
    """`deb-src` entries mirroring the system's `deb` ones (release, -updates and -security)."""
    if os.environ.get(MIRROR_ENV, "").strip():
        return [f"deb-src [signed-by={DEBIAN_KEYRING}] {debian_mirror()} bookworm main"]
    return [line for source in system_sources() for line in source.lines("deb-src")]


# --- a private apt --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateApt:
    """apt-get/apt-cache with our own sources list and index directory under `root`.

    Only the sources list, the lists directory and the binary caches are redirected; the rest of
    the system's apt configuration (proxies, keyrings) still applies, which is what we want.
    """

    root: Path
    source_lines: tuple[str, ...]

    @property
    def sources_list(self) -> Path:
        return self.root / "sources.list"

    def options(self) -> list[str]:
        opts: dict[str, str] = {
            "Dir::Etc::sourcelist": str(self.sources_list),
            # An empty directory, so the system's sources.list.d is not read.
            "Dir::Etc::sourceparts": str(self.root / "sources.list.d"),
            "Dir::State::Lists": str(self.root / "lists"),
            # No pkgcache.bin files: they would land in /var/cache/apt, beside the system's.
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Acquire::Languages": "none",
        }
        if os.geteuid() == 0:
            # Downloads go to a root-only cache directory the _apt user cannot write; apt would
            # fall back to root anyway, after a warning on every call.
            opts["APT::Sandbox::User"] = "root"
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def prepare(self) -> None:
        (self.root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list.d").mkdir(parents=True, exist_ok=True)
        text = "".join(line + "\n" for line in self.source_lines)
        if not self.sources_list.is_file() or self.sources_list.read_text() != text:
            atomic_write(self.sources_list, text.encode())

    def update(self) -> None:
        """Refresh the private index (cheap when nothing changed: apt sends If-Modified-Since).

        Offline, apt warns and keeps the lists it has, so a cached build still finds its key.
        """
        # apt-get fails at once, not waits, when another update holds the lists' lock.
        with file_lock(self.root / ".update.lock"):
            self.prepare()
            run(["apt-get", "-q", *self.options(), "update"])

    def apt_get(self, args: Sequence[str], *, cwd: Path, capture: bool = False) -> str:
        proc = run(["apt-get", "-q", *self.options(), *args], cwd=cwd, capture=capture)
        return proc.stdout.decode() if capture else ""


# --- the tools ------------------------------------------------------------------------------------


def _tools_cache() -> Path:
    return paths.cache_dir() / "tools"


def _cached_vsock_binary() -> Path | None:
    # One directory per fetched version; the binary appears only after it was verified to run.
    found = sorted(_tools_cache().glob(f"{VSOCK_PACKAGE}-*/usr/bin/{VSOCK_PACKAGE}"))
    return found[-1] if found else None


def _check_runs(binary: Path) -> None:
    """The sid build must run on this host (it needs glibc >= 2.34; bookworm has 2.36)."""
    try:
        output([binary, "--help"])
    except BuildError as e:
        raise BuildError(
            f"sid's {VSOCK_PACKAGE} does not run on this host ({e}); it may now need a newer "
            f"glibc than this host has: put a {VSOCK_PACKAGE} that runs here on PATH (it is "
            "used in preference to sid's)"
        ) from e


def fetch_vhost_device_vsock() -> Path:
    """Download vhost-device-vsock from sid into the tools cache (once) and return the binary."""
    with file_lock(_tools_cache() / f".{VSOCK_PACKAGE}.lock"):
        cached = _cached_vsock_binary()
        if cached is not None:
            return cached
        with step(f"Fetching {VSOCK_PACKAGE} from Debian sid (not installed system-wide)"):
            line = f"deb [signed-by={DEBIAN_KEYRING}] {debian_mirror()} sid main"
            apt = PrivateApt(paths.cache_dir() / "apt" / "sid", (line,))
            apt.update()
            return _download_and_unpack(apt)


def _download_and_unpack(apt: PrivateApt) -> Path:
    work = Path(tempfile.mkdtemp(dir=_tools_cache(), prefix=f".{VSOCK_PACKAGE}."))
    try:
        apt.apt_get(["download", VSOCK_PACKAGE], cwd=work)
        debs = sorted(work.glob(f"{VSOCK_PACKAGE}_*.deb"))
        if len(debs) != 1:
            raise BuildError(f"apt-get download left {debs or 'no .deb'} in {work}")
        version = output(["dpkg-deb", "--field", debs[0], "Version"])
        tree = work / "tree"
        run(["dpkg-deb", "-x", debs[0], tree])
        binary = tree / "usr" / "bin" / VSOCK_PACKAGE
        if not binary.is_file():
            raise BuildError(f"{debs[0].name} holds no usr/bin/{VSOCK_PACKAGE}")
        _check_runs(binary)
        final = _tools_cache() / f"{VSOCK_PACKAGE}-{version}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tree, final)  # the verified tree appears in one step
        return final / "usr" / "bin" / VSOCK_PACKAGE
    finally:
        shutil.rmtree(work, ignore_errors=True)


def vhost_device_vsock() -> Path:
    """The vhost-device-vsock binary: one on PATH if installed, else sid's, fetched on first use."""
    on_path = shutil.which(VSOCK_PACKAGE)
    if on_path:
        return Path(on_path)
    return fetch_vhost_device_vsock()
