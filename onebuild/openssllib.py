"""libssl and libcrypto with only what the frozen init's TLS and hashes use.

The init reaches OpenSSL through two extension modules, `_ssl` and `_hashlib`; Debian's
libcrypto.so.3 (4.7 MB) and libssl.so.3 (0.7 MB) export every API OpenSSL has. Debian also
ships both as static archives (libssl-dev), built from the same sources with the same
configuration (OPENSSLDIR, MODULESDIR and the built-in providers are compiled in). A pair linked
from them, each exporting exactly the versioned symbols its consumers import and nothing else,
lets the linker drop what no exported entry point reaches (CMS, OCSP building, the CMP client,
PKCS#12, ...). Relative relocations are packed (DT_RELR, glibc 2.36, the tree's libc): Debian's
libcrypto spends 400 KB on them. Measured with Debian 12's OpenSSL 3.0: libcrypto 4.73 -> 3.56
MB, libssl 688 -> 561 KB; in the zstd squashfs, 1.97 -> 1.64 MB for the two.

The consumers' imports name a version node (OPENSSL_3.0.0, OPENSSL_3.0.3, ...) and the library
(verneed), and the dynamic linker binds each to a definition of that version in that file only:
the version script gives every symbol the node Debian's library defines it in, with Debian's
node inheritance, and `unresolved` checks the result before it replaces Debian's.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

from onebuild import archivelink, elfdeps
from onebuild.tools import BuildError, step

PACKAGE = "libssl-dev"
LIBSSL = "libssl.so.3"
LIBCRYPTO = "libcrypto.so.3"
LIBRARIES = (LIBSSL, LIBCRYPTO)
ARCHIVES = {LIBSSL: Path("/usr/lib/x86_64-linux-gnu/libssl.a"),
            LIBCRYPTO: Path("/usr/lib/x86_64-linux-gnu/libcrypto.a")}

Symbol = tuple[str, str]  # (name, version node)
_HIDDEN = 0x8000  # in a .gnu.version entry: a non-default version (sym@V, not sym@@V)


def archive(soname: str) -> Path:
    """The static archive a library is linked from."""
    return archivelink.archive(ARCHIVES[soname], PACKAGE)


def _sections(elf: ELFFile) -> tuple[SymbolTableSection | None, GNUVerSymSection | None]:
    dynsym = elf.get_section_by_name(".dynsym")
    versym = elf.get_section_by_name(".gnu.version")
    return (dynsym if isinstance(dynsym, SymbolTableSection) else None,
            versym if isinstance(versym, GNUVerSymSection) else None)


def imports(path: Path) -> dict[str, set[Symbol]]:
    """library file -> the versioned symbols `path` imports from it (its verneed entries)."""
    found: dict[str, set[Symbol]] = defaultdict(set)
    with path.open("rb") as f:
        elf = ELFFile(f)
        verneed = elf.get_section_by_name(".gnu.version_r")
        dynsym, versym = _sections(elf)
        if not isinstance(verneed, GNUVerNeedSection) or dynsym is None or versym is None:
            return {}
        by_index: dict[int, tuple[str, str]] = {}
        for need, auxes in verneed.iter_versions():
            for aux in auxes:
                by_index[aux["vna_other"]] = (str(need.name), aux.name)
        for i, sym in enumerate(dynsym.iter_symbols()):
            ndx = versym.get_symbol(i)["ndx"]
            if sym["st_shndx"] == "SHN_UNDEF" and isinstance(ndx, int) and ndx in by_index:
                library, version = by_index[ndx]
                found[library].add((sym.name, version))
    return dict(found)


def exports(path: Path) -> set[Symbol]:
    """The versioned symbols `path` defines for others (hidden and local ones left out)."""
    out: set[Symbol] = set()
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynsym, versym = _sections(elf)
        names = _version_names(elf)
        if dynsym is None or versym is None:
            return out
        for i, sym in enumerate(dynsym.iter_symbols()):
            ndx = versym.get_symbol(i)["ndx"]
            if (sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS") or not isinstance(ndx, int)
                    or sym["st_info"]["bind"] == "STB_LOCAL"):
                continue  # undefined, a version node's own name, unversioned or local
            # A non-default version is still bound by references that name it.
            out.add((sym.name, names.get(ndx & ~_HIDDEN, "")))
    return out


def _version_names(elf: ELFFile) -> dict[int, str]:
    verdef = elf.get_section_by_name(".gnu.version_d")
    if not isinstance(verdef, GNUVerDefSection):
        return {}
    return {d["vd_ndx"]: next(iter(auxes)).name for d, auxes in verdef.iter_versions()}


def version_nodes(path: Path) -> list[tuple[str, str | None]]:
    """The version nodes `path` defines, in order, each with the node it inherits (or None);
    the base node (the soname) left out."""
    with path.open("rb") as f:
        verdef = ELFFile(f).get_section_by_name(".gnu.version_d")
        if not isinstance(verdef, GNUVerDefSection):
            return []
        nodes = []
        for d, auxes in verdef.iter_versions():
            names = [aux.name for aux in auxes]
            if not d["vd_flags"] & 1:  # VER_FLG_BASE
                nodes.append((names[0], names[1] if len(names) > 1 else None))
        return nodes


def version_script(symbols: Iterable[Symbol], nodes: list[tuple[str, str | None]]) -> str:
    """A version script exporting `symbols`, each in its node, every node of `nodes` defined
    (empty ones too: a consumer may need the node itself) and everything else local."""
    members: dict[str, list[str]] = defaultdict(list)
    for name, version in sorted(symbols):
        members[version].append(name)
    unknown = set(members) - {node for node, _ in nodes}
    if unknown:
        raise BuildError(f"symbols of version(s) {', '.join(sorted(unknown))}, which the "
                         "library does not define")
    lines = []
    for i, (node, parent) in enumerate(nodes):
        body = "".join(f" {name};" for name in members[node])
        scope = (" global:" if body else "") + body + (" local: *;" if i == 0 else "")
        lines.append(f"{node} {{{scope} }}{' ' + parent if parent else ''};")
    return "\n".join(lines) + "\n"


def consumers(internal: Path) -> list[Path]:
    """The ELFs of the tree that import from libssl or libcrypto, the two themselves aside."""
    return [elf for elf in elfdeps.elves(internal)
            if elf.name not in LIBRARIES and set(imports(elf)) & set(LIBRARIES)]


def _needs(elves: Iterable[Path], library: str) -> set[Symbol]:
    return {symbol for elf in elves for symbol in imports(elf).get(library, set())}


def link(soname: str, exported: set[Symbol], debian: Path, dest: Path,
         shared: tuple[Path, ...] = ()) -> None:
    """Link `dest` from the archive of `soname`, exporting `exported` in the version nodes of
    `debian` (Debian's library of that soname); `shared` are libraries it links against."""
    archivelink.link(
        dest, soname, inputs=[archive(soname), *shared],
        version_script=version_script(exported, version_nodes(debian)),
        entry_points=sorted({name for name, _ in exported}),
        # Debian's flags (the dynamic loader never unloads OpenSSL: it keeps atexit handlers),
        # and packed relative relocations.
        flags=["-Wl,--no-undefined",
               "-Wl,-z,relro,-z,now,-z,nodelete,-z,noexecstack,-z,pack-relative-relocs"])


def unresolved(internal: Path) -> list[str]:
    """Each versioned import of the tree's ELFs from libssl/libcrypto that the tree's library
    does not define with that version ("consumer: symbol@version"); empty when all bind."""
    problems = []
    for library in LIBRARIES:
        defined = exports(internal / library)
        for elf in elfdeps.elves(internal):
            for name, version in sorted(imports(elf).get(library, set()) - defined):
                problems.append(f"{elf.relative_to(internal)}: {name}@{version}")
    return problems


def replace(internal: Path) -> None:
    """Swap the tree's Debian libssl/libcrypto for the pair linked with only what the tree's
    consumers import, checked to bind before it goes in."""
    users = consumers(internal)
    with step("Linking libssl and libcrypto with what _ssl and _hashlib use"), \
            tempfile.TemporaryDirectory(prefix="openssllib-") as tmp:
        work = Path(tmp)
        ssl = work / LIBSSL
        # libssl's imports from libcrypto come from Debian's libcrypto (versions and all); the
        # archive after it supplies the internal helpers Debian's libssl carries too (WPACKET).
        link(LIBSSL, _needs(users, LIBSSL), internal / LIBSSL, ssl,
             (internal / LIBCRYPTO, archive(LIBCRYPTO)))
        crypto = work / LIBCRYPTO
        link(LIBCRYPTO, _needs([*users, ssl], LIBCRYPTO), internal / LIBCRYPTO, crypto)
        for lib in (ssl, crypto):
            os.replace(lib, internal / lib.name)
    problems = unresolved(internal)
    if problems:
        raise BuildError("the trimmed OpenSSL libraries miss imports: " + ", ".join(problems))
