"""target/mvirt-one.spdx.json: what the UKI ships, file by file, and where each file came from.

An SPDX 2.3 document listing every file of the initramfs tree (regular files and links, by the
path the VM sees; the two /usr images and the archives that hold them too) and every section of
the UKI, each with its sha256 and its origins, as packages: a Debian package (version and
license from dpkg and its copyright file), a Python distribution of the venv (version and license
from its metadata), the Linux kernel (version, config hashes), crun's source version, or this
project. How an origin is known:

- what the build writes itself (skeleton, /init, the generated tables, links) is this project's;
- files the build copies or links from a named Debian file (HOST_FILES, the CA bundle, OpenSSL
  and libzstd relinked from static archives, the static crun) are that file's package's;
- every other ELF file is matched by content or, for the copies PyInstaller strips, by GNU
  build-id against the files of the same name that dpkg and the venv's distributions own;
- the frozen init's module archive and base_library.zip are read back, and each module goes to
  this project, Python's standard library (the dpkg owner of its file) or its distribution.

A file of no known origin fails the build. The document's only date is reproducible.epoch(), and
everything in it is sorted: two builds of the same tree give the same bytes.
`python -m onebuild.sbom target/mvirt-one.spdx.json` prints it as a table.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile

from init import precompiled
from onebuild import (
    cacerts,
    elfdeps,
    freeze,
    initramfs,
    inspect,
    openssllib,
    paths,
    reproducible,
    runtime,
    uki,
    zstdlib,
)
from onebuild.tools import BuildError, run, step

OUT = paths.TARGET / "mvirt-one.spdx.json"
KERNEL_VERSION = paths.ROOT / "kernel.version"
KERNEL_FRAGMENT = paths.ROOT / "kernel.config"
KERNEL_CONFIG = paths.TARGET / "kernel.config"  # the full .config the kernel was built with
KERNEL_PATCHES = paths.ROOT / "kernel.patches"
DPKG_STATUS = Path("/var/lib/dpkg/status")
LIBC_STATIC = Path("/usr/lib/x86_64-linux-gnu/libc.a")  # what preinit (/init) is linked with
PROJECT = "mvirt-one"
TREE_PREFIX = "./initramfs"  # the SPDX file names of the initramfs's files start with it
PROJECT_MODULES = ("init", "oneproto")  # top-level packages of the frozen init that are ours
LINUX_LICENSE = "GPL-2.0-only WITH Linux-syscall-note"
CRUN_LICENSE = "GPL-2.0-or-later AND LGPL-2.1-or-later"  # crun, and libcrun linked into it
# Source packages whose copyright file is not machine-readable (DEP-5): their main license.
DEBIAN_LICENSES = {"glibc": "LGPL-2.1-or-later", "python3.11": "PSF-2.0"}
# Python distributions whose metadata names no SPDX license.
PYTHON_LICENSES = {"pyinstaller": "GPL-2.0-or-later WITH Bootloader-exception"}
# Trove classifiers that name one license, for metadata without an SPDX expression.
CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
}
# Debian's short license names (DEP-5) that are not SPDX identifiers as they stand.
DEBIAN_NAMES = {
    "expat": "MIT", "gpl": "GPL-1.0-or-later", "gpl-1+": "GPL-1.0-or-later",
    "gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later", "gpl-3": "GPL-3.0-only",
    "gpl-3+": "GPL-3.0-or-later", "lgpl": "LGPL-2.0-or-later", "lgpl-2": "LGPL-2.0-only",
    "lgpl-2+": "LGPL-2.0-or-later", "lgpl-2.1": "LGPL-2.1-only", "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3+": "LGPL-3.0-or-later", "apache-2": "Apache-2.0", "apache-2.0": "Apache-2.0",
    "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause", "zlib": "Zlib", "mit": "MIT",
    "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0", "cc0-1.0": "CC0-1.0", "isc": "ISC", "x11": "X11",
    "artistic": "Artistic-1.0-Perl", "psf-2": "PSF-2.0",
}
_SPDX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


@dataclass(frozen=True, order=True)
class Origin:
    """Where a file (or part of one) came from: a package of the SPDX document."""

    kind: str  # debian, python, linux, crun, project, site
    name: str
    version: str = ""
    license: str = "NOASSERTION"
    detail: str = ""

    @property
    def spdxid(self) -> str:
        return "SPDXRef-Package-" + _id(f"{self.kind}-{self.name}")

    def label(self) -> str:
        return f"{self.kind}:{self.name}" + (f" {self.version}" if self.version else "")


@dataclass
class Entry:
    """One file of the initramfs or one section of the UKI."""

    path: str
    data: bytes
    kind: str  # file, link, section, archive
    origins: set[Origin] = field(default_factory=set)
    note: str = ""


def _id(text: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")
    return f"{clean[:80]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _dpkg_query(args: list[str]) -> str:
    """dpkg-query's output; it exits 1 when one of several patterns matched nothing."""
    return run(["dpkg-query", *args], capture=True, quiet=True, check=False).stdout.decode()


def debian_license_of(copyright_text: str, source: str) -> str:
    """The main license of a Debian package, as an SPDX expression: the `Files: *` paragraph's
    license in a machine-readable copyright file, DEBIAN_LICENSES, or NOASSERTION."""
    if not copyright_text.startswith("Format:"):
        return DEBIAN_LICENSES.get(source, "NOASSERTION")
    every: list[str] = []
    for p in re.split(r"\n\s*\n", copyright_text):
        files = re.search(r"^Files:\s*(.*)$", p, re.M)
        name = re.search(r"^License:\s*(.+)$", p, re.M)
        if files and name and files[1].split()[0] == "*":
            return _spdx_expression(name[1].strip())
        if files and name:
            every.append(_spdx_expression(name[1].strip()))
    # No paragraph for all files: every license it names, all of them applying.
    parts = sorted(set(every))
    if not parts:
        return DEBIAN_LICENSES.get(source, "NOASSERTION")
    return " AND ".join(f"({x})" if " " in x else x for x in parts)


def _spdx_expression(debian: str) -> str:
    words = re.split(r"\s+(or|and)\s+", debian.strip().rstrip(","), flags=re.I)
    out = []
    for i, word in enumerate(words):
        if i % 2:
            out.append(word.upper())
            continue
        key = word.strip().lower()
        spdx = DEBIAN_NAMES.get(key, word.strip())
        out.append(spdx if _SPDX_ID.match(spdx) else "LicenseRef-" + _id(spdx))
    return " ".join(out)


class Debian:
    """dpkg's knowledge of the host's files, asked once per batch and remembered."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}
        self._packages: dict[str, Origin] = {}

    def owners(self, patterns: Iterable[str]) -> list[tuple[str, str]]:
        """(package, path) for every dpkg-owned path matching one of `patterns`."""
        found = []
        pats = sorted(set(patterns))
        for i in range(0, len(pats), 200):
            for line in _dpkg_query(["-S", *pats[i:i + 200]]).splitlines():
                packages, _, path = line.partition(": ")
                if path.startswith("/") and not packages.startswith("diversion"):
                    for package in packages.split(", "):
                        found.append((package.split(":")[0], path))
        return sorted(set(found))

    def owner(self, path: Path) -> Origin:
        """The package owning `path` (a host file, through its links), or a BuildError."""
        names = [str(path), str(path.resolve())]
        # merged /usr: dpkg may know /lib/x as /lib/x while the file is reached as /usr/lib/x
        names += [n[4:] if n.startswith("/usr/") else "/usr" + n for n in names]
        for candidate in dict.fromkeys(names):
            if candidate not in self._owner:
                owners = [p for p, f in self.owners([candidate]) if f == candidate]
                if owners:
                    self._owner[candidate] = owners[0]
            if candidate in self._owner:
                return self.package(self._owner[candidate])
        raise BuildError(f"{path}: no Debian package owns it (dpkg-query -S)")

    def package(self, name: str) -> Origin:
        if name not in self._packages:
            fields = _dpkg_query(["-W", "-f", "${Version}\\t${source:Package}", name]).split("\t")
            if len(fields) != 2 or not fields[0]:
                raise BuildError(f"Debian package {name} is not installed")
            version, source = fields
            copyright_file = Path("/usr/share/doc") / name / "copyright"
            text = copyright_file.read_text(errors="replace") if copyright_file.is_file() else ""
            self._packages[name] = Origin("debian", name, version, debian_license_of(text, source),
                                          f"source package {source}")
        return self._packages[name]


@functools.cache
def python_origin(dist: str) -> Origin:
    meta = importlib.metadata.metadata(dist)
    name = meta["Name"]
    license_ = PYTHON_LICENSES.get(name.lower()) or meta["License-Expression"] or ""
    if not license_:
        short = (meta["License"] or "").strip()
        classified = sorted({CLASSIFIERS[c] for c in meta.get_all("Classifier") or []
                             if c in CLASSIFIERS})
        if _SPDX_ID.match(short):
            license_ = short
        elif len(classified) == 1:
            license_ = classified[0]
        else:
            license_ = "NOASSERTION"
    return Origin("python", name, meta["Version"], license_)


@functools.cache
def project() -> Origin:
    """This project: what the build writes (each file's note says from what)."""
    try:
        version = importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return Origin("project", PROJECT, version, "NOASSERTION")


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def linux() -> Origin:
    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    patches = hashlib.sha256(b"".join(
        p.name.encode() + b"\0" + p.read_bytes() for p in sorted(KERNEL_PATCHES.glob("*"))
        if p.is_file())).hexdigest()
    detail = (f"kernel.org source {KERNEL_VERSION.read_text().strip()}; kernel.config sha256 "
              f"{sha(KERNEL_FRAGMENT)}; full .config sha256 {sha(KERNEL_CONFIG)}; "
              f"kernel.patches sha256 {patches}")
    return Origin("linux", "linux", KERNEL_VERSION.read_text().strip(), LINUX_LICENSE, detail)


def build_id(path: Path) -> str | None:
    with path.open("rb") as f:
        elf = ELFFile(f)
        section: Any = elf.get_section_by_name(".note.gnu.build-id")
        if section is None:
            return None
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
    return None


class Resolver:
    """Finds the origins of the files of an initramfs tree."""

    def __init__(self, tree: Path, debian: Debian | None = None) -> None:
        self.tree = tree
        self.debian = debian or Debian()
        self._dist_files: dict[str, list[tuple[str, Path]]] | None = None
        self._module_owner: dict[str, str] = {}

    # Python modules -------------------------------------------------------------------------

    def module(self, name: str) -> Origin:
        """The origin of a module of the frozen init, by its top-level name."""
        top = name.split(".")[0]
        if top in PROJECT_MODULES or name == "__main__":
            return project()
        if top.startswith(("pyimod", "pyiboot")):
            return python_origin("pyinstaller")
        if top.startswith("pyi_rth_"):
            if (freeze.HOOKS / "rthooks" / f"{top}.py").is_file():
                return project()
            for dist in ("pyinstaller", "pyinstaller-hooks-contrib"):
                if any(Path(str(f)).name == f"{top}.py"
                       for f in importlib.metadata.files(dist) or []):
                    return python_origin(dist)
        elif top in sys.stdlib_module_names:
            spec = importlib.util.find_spec(top)
            origin = spec.origin if spec else None
            if origin and os.path.isabs(origin):
                return self.debian.owner(Path(origin))
            return self.debian.owner(Path(sys.executable))  # built into the interpreter
        else:
            dists = _packages_distributions().get(top, [])
            if dists:
                return python_origin(sorted(dists)[0])
        raise BuildError(f"module {name} of the frozen init: no known origin")

    def frozen_modules(self, executable: Path) -> set[Origin]:
        from PyInstaller.archive.readers import CArchiveReader

        archive = CArchiveReader(str(executable))
        names = [n for n, entry in archive.toc.items() if entry[-1] in ("m", "s", "M")]
        pyz = [n for n, entry in archive.toc.items() if entry[-1] == "z"]
        for n in pyz:
            names += list(archive.open_embedded_archive(n).toc)
        return {self.module(n) for n in names}

    def zipped_modules(self, path: Path) -> set[Origin]:
        with zipfile.ZipFile(path) as z:
            names = [n.removesuffix(".pyc").replace("/", ".") for n in z.namelist()
                     if n.endswith(".pyc")]
        if not names:
            raise BuildError(f"{path}: no module in it")
        return {self.module(n) for n in names}

    # ELF files ---------------------------------------------------------------------------

    def dist_files(self) -> dict[str, list[tuple[str, Path]]]:
        if self._dist_files is None:
            self._dist_files = {}
            for dist in importlib.metadata.distributions():
                for f in dist.files or []:
                    located = Path(str(dist.locate_file(f)))
                    self._dist_files.setdefault(located.name, []).append(
                        (dist.metadata["Name"], located))
        return self._dist_files

    def elves(self, files: dict[str, Path]) -> dict[str, tuple[Origin, str]]:
        """For tree files (rel -> path) that are ELF: the origin whose file of the same name is
        the same bytes, or the same link (build-id) stripped."""
        owned = self.debian.owners(f"*/{Path(rel).name}" for rel in files)
        by_name: dict[str, list[tuple[Origin | str, Path]]] = {}
        for package, owned_path in owned:
            by_name.setdefault(Path(owned_path).name, []).append((package, Path(owned_path)))
        for name in {Path(rel).name for rel in files}:
            for dist, located in sorted(self.dist_files().get(name, [])):
                by_name.setdefault(name, []).append((python_origin(dist), located))
        found: dict[str, tuple[Origin, str]] = {}
        for rel, path in files.items():
            data = path.read_bytes()
            ident = build_id(path)
            for who, candidate in by_name.get(path.name, []):
                host = Path(candidate)
                if not host.is_file():
                    continue
                origin = self.debian.package(who) if isinstance(who, str) else who
                if host.read_bytes() == data:
                    found[rel] = (origin, f"as {host}")
                    break
                if ident and elfdeps.is_elf(host) and build_id(host) == ident:
                    found[rel] = (origin, f"{host}, stripped (same GNU build-id {ident})")
                    break
        return found


def _tree_origins(tree: Path, resolver: Resolver) -> list[Entry]:
    """Every regular file and link of the tree with its origins; BuildError for unknown ones."""
    skeleton = initramfs.SKELETON
    lazy_prefix = initramfs.LAZY + "/"
    internal = f"{initramfs.INIT_DIR}/_internal/"
    info = runtime.runtime_info()
    runtime_path = str(info["path_in_initramfs"]).lstrip("/")
    host_files = {rel: host for rel, (host, _package) in initramfs.HOST_FILES.items()}
    entries: list[Entry] = []
    elves: dict[str, Path] = {}
    for p in sorted(tree.rglob("*")):
        rel = str(p.relative_to(tree))
        if p.is_symlink():
            entries.append(Entry("/" + rel, os.readlink(p).encode(), "link", {project()}))
            continue
        if not p.is_file():
            continue
        # The path the build put it at, before LAZY_FILES moved it under /usr/lazy.
        orig = initramfs.USR + "/" + rel[len(lazy_prefix):] if rel.startswith(lazy_prefix) else rel
        e = Entry("/" + rel, p.read_bytes(), "file")
        entries.append(e)
        name = Path(orig).name
        if (skeleton / orig).is_file() and (skeleton / orig).read_bytes() == e.data:
            e.origins.add(project())
            e.note = f"initramfs/rootfs/{orig}"
        elif orig == "init":
            e.origins |= {project(), resolver.debian.owner(LIBC_STATIC)}
            e.note = "preinit/preinit.c, linked statically with glibc's libc.a"
        elif orig == cacerts.BUNDLE:
            e.origins.add(resolver.debian.package(cacerts.PACKAGE))
            if e.data != cacerts.bundle(""):
                e.origins.add(Origin("site", "EXTRA_CA_CERTS", detail="site CA certificates"))
        elif orig in host_files:
            if host_files[orig].read_bytes() != e.data:
                raise BuildError(f"/{rel} differs from {host_files[orig]}: rebuild the initramfs")
            e.origins.add(resolver.debian.owner(host_files[orig]))
        elif orig == runtime_path:
            if hashlib.sha256(e.data).hexdigest() != info["sha256"]:
                raise BuildError(f"/{rel} is not the runtime runtime.json names: rebuild")
            source = str(info["source"])
            m = re.match(r"debian:(\S+) (\S+)", source)
            if m:
                e.origins.add(Origin("crun", m[1], m[2], CRUN_LICENSE,
                                     f"{source}, built by onebuild/runtime.py"))
                e.origins |= {resolver.debian.package(p) for p in runtime.STATIC_LIB_PACKAGES}
            else:
                e.origins.add(Origin("site", str(info["name"]), detail=f"RUNTIME={source}"))
        elif orig.startswith(internal) and name in openssllib.LIBRARIES:
            e.origins.add(resolver.debian.owner(openssllib.archive(name)))
            e.note = f"linked from {openssllib.archive(name)} by onebuild/openssllib.py"
        elif orig.startswith(internal) and name == zstdlib.output().name:
            e.origins.add(resolver.debian.owner(zstdlib.STATIC_LIB))
            e.note = f"linked from {zstdlib.STATIC_LIB} by onebuild/zstdlib.py"
        elif orig.startswith(internal) and name == precompiled.TABLE_NAME:
            e.origins.add(project())
            e.note = "generated by onebuild/precompile.py"
        elif orig.startswith(internal) and name == "base_library.zip":
            e.origins |= resolver.zipped_modules(p)
            e.note = "Python modules, compiled by PyInstaller"
        elif orig == f"{initramfs.INIT_DIR}/{freeze.NAME}":
            e.origins |= {python_origin("pyinstaller"), *resolver.frozen_modules(p)}
            e.note = "PyInstaller's bootloader and the frozen init's modules"
        elif elfdeps.is_elf(p):
            elves[rel] = p
    found = resolver.elves(elves)
    for e in entries:
        rel = e.path[1:]
        if rel in found:
            e.origins.add(found[rel][0])
            e.note = found[rel][1]
    unknown = [e.path for e in entries if not e.origins]
    if unknown:
        raise BuildError("files of the initramfs with no known origin (onebuild/sbom.py): "
                         + ", ".join(unknown))
    return entries


def _uki_entries(resolver: Resolver) -> list[Entry]:
    """The UKI file, the initramfs archives it holds, and each of its PE sections."""
    image = uki.OUT.read_bytes()
    ours = uki.sections()
    stub = uki.STUB.read_bytes()
    stub_sections = {s.name: s.content(stub) for s in inspect.uki_sections(uki.STUB)}
    kernel = linux()
    built = {".osrel": (project(), "initramfs/rootfs/etc/os-release"),
             ".cmdline": (project(), "cmdline.txt"), ".uname": (kernel, "kernel.release"),
             ".linux": (kernel, "the bzImage, handed over (onebuild/uki.py)"),
             ".initrd": (project(), "initramfs.cpio.zst: the files of this document")}
    entries = [Entry(uki.OUT.name, image, "archive", {project()}, "assembled by onebuild/uki.py"),
               Entry(initramfs.CPIO_ZST.name, initramfs.CPIO_ZST.read_bytes(), "archive",
                     {project()}, "the UKI's .initrd"),
               Entry(initramfs.CPIO_GZ.name, initramfs.CPIO_GZ.read_bytes(), "archive",
                     {project()}, "the same cpio with gzip, for direct kernel boot")]
    for image_name, mount in initramfs.IMAGES:
        local = paths.TARGET / f"initramfs.{Path(image_name).stem}.squashfs"
        entries.append(Entry("/" + image_name, local.read_bytes(), "archive", {project()},
                             f"squashfs of /{mount}, in the initramfs"))
    for s in inspect.uki_sections(uki.OUT):
        data = s.content(image)
        e = Entry(f"{uki.OUT.name}:{s.name}", data, "section")
        if s.name in ours:
            e.origins.add(built[s.name][0])
            e.note = built[s.name][1]
        elif stub_sections.get(s.name) == data:
            e.origins.add(resolver.debian.owner(uki.STUB))
            e.note = f"from {uki.STUB}"
        else:
            raise BuildError(f"UKI section {s.name}: neither ours nor the stub's")
        entries.append(e)
    return entries


def file_name(path: str) -> str:
    """SPDX's relative file name: the initramfs's files under ./initramfs/ (`/usr/x` is
    ./initramfs/usr/x), the UKI and its sections (`mvirt-one.efi:.linux`) under ./."""
    return f"{TREE_PREFIX}{path}" if path.startswith("/") else f"./{path}"


def document(entries: list[Entry], created: int) -> dict[str, Any]:
    """The SPDX 2.3 document for `entries` (sorted, no other date than `created`)."""
    top = project()
    uki_digest = next((hashlib.sha256(e.data).hexdigest() for e in entries
                       if e.path == uki.OUT.name), hashlib.sha256(b"").hexdigest())
    origins = sorted({o for e in entries for o in e.origins} | {top})
    refs = sorted({part for o in origins for part in o.license.split()
                   if part.startswith("LicenseRef-")})
    packages = []
    for o in origins:
        pkg: dict[str, Any] = {
            "SPDXID": o.spdxid, "name": o.name, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
            "licenseDeclared": o.license, "copyrightText": "NOASSERTION",
            "supplier": {"debian": "Organization: Debian", "python": "NOASSERTION"}.get(
                o.kind, "NOASSERTION"),
            "comment": f"origin kind: {o.kind}" + (f"; {o.detail}" if o.detail else ""),
        }
        if o.version:
            pkg["versionInfo"] = o.version
        if o.kind == "debian":
            pkg["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                    "referenceType": "purl",
                                    "referenceLocator": f"pkg:deb/debian/{o.name}@{o.version}"
                                                        "?arch=amd64&distro=debian-12"}]
        elif o.kind == "python":
            pkg["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                    "referenceType": "purl",
                                    "referenceLocator": f"pkg:pypi/{o.name.lower()}@{o.version}"}]
        if o == top:
            # It CONTAINS every file below: SPDX wants them analysed, and their code.
            sha1s = sorted(hashlib.sha1(e.data).hexdigest() for e in entries)
            pkg["filesAnalyzed"] = True
            pkg["packageVerificationCode"] = {
                "packageVerificationCodeValue": hashlib.sha1("".join(sha1s).encode()).hexdigest()}
            pkg["licenseInfoFromFiles"] = ["NOASSERTION"]
            pkg["primaryPackagePurpose"] = "OPERATING-SYSTEM"
            pkg["checksums"] = [{"algorithm": "SHA256", "checksumValue": uki_digest}]
            pkg["packageFileName"] = uki.OUT.name
        packages.append(pkg)
    files = []
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": top.spdxid}]
    for e in sorted(entries, key=lambda e: e.path):
        fid = "SPDXRef-File-" + _id(e.path)
        text = e.data.decode(errors="replace") if e.kind == "link" else ""
        files.append({
            "SPDXID": fid, "fileName": file_name(e.path),
            "checksums": [{"algorithm": "SHA1", "checksumValue": hashlib.sha1(e.data).hexdigest()},
                          {"algorithm": "SHA256",
                           "checksumValue": hashlib.sha256(e.data).hexdigest()}],
            "fileTypes": ["BINARY" if e.kind != "link" else "OTHER"],
            "licenseConcluded": "NOASSERTION", "copyrightText": "NOASSERTION",
            "comment": "; ".join(x for x in (
                f"{e.kind}" + (f" to {text}" if text else f", {len(e.data)} bytes"),
                "from " + ", ".join(o.label() for o in sorted(e.origins)), e.note) if x),
        })
        relationships.append({"spdxElementId": top.spdxid, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": fid})
        for o in sorted(e.origins):
            relationships.append({"spdxElementId": fid, "relationshipType": "GENERATED_FROM",
                                  "relatedSpdxElement": o.spdxid})
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{PROJECT} {uki.OUT.name}",
        "documentNamespace": f"https://spdx.org/spdxdocs/{PROJECT}-{uki_digest}",
        "creationInfo": {
            "created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: {PROJECT}-onebuild.sbom"],
        },
        "documentDescribes": [top.spdxid],
        "packages": packages, "files": files, "relationships": relationships,
    }
    if refs:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": r, "extractedText": "A license named in a Debian copyright file "
             "(/usr/share/doc/PACKAGE/copyright) with no SPDX identifier.", "name": r}
            for r in refs]
    return doc


def manifest_paths(manifest: Path = initramfs.MANIFEST) -> set[str]:
    """The paths initramfs.tree.txt lists (files and links)."""
    return {line.split(" -> ")[0].split()[-1] for line in manifest.read_text().splitlines()
            if line.strip()}


def entries(tree: Path = initramfs.TREE, manifest: Path = initramfs.MANIFEST) -> list[Entry]:
    """Every file and link of the tree and every part of the UKI, each with its origins."""
    resolver = Resolver(tree)
    files = _tree_origins(tree, resolver)
    differ = manifest_paths(manifest) ^ {e.path for e in files}
    if differ:
        raise BuildError(f"{tree} and {manifest} differ ({', '.join(sorted(differ)[:5])}): "
                         "rebuild the initramfs")
    return [*files, *_uki_entries(resolver)]


def render(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def build(out: Path = OUT) -> None:
    """target/mvirt-one.spdx.json for the built UKI and initramfs tree."""
    with step(f"Writing {out.relative_to(paths.ROOT) if out.is_relative_to(paths.ROOT) else out}"):
        found = entries()
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(render(document(found, reproducible.epoch())))
        os.replace(tmp, out)
        print(f"  {len(found)} files and sections, "
              f"{len({o for e in found for o in e.origins})} origins")


def table(doc: dict[str, Any]) -> str:
    """One line per file: path, sha256 (first 16 digits) and origins; a link's target."""
    names = {p["SPDXID"]: f"{p['name']} {p.get('versionInfo', '')}".strip()
             + f" ({p['licenseDeclared']})" for p in doc["packages"]}
    origins: dict[str, list[str]] = {}
    for r in doc["relationships"]:
        if r["relationshipType"] == "GENERATED_FROM":
            origins.setdefault(r["spdxElementId"], []).append(names[r["relatedSpdxElement"]])
    rows = []
    for f in doc["files"]:
        sha = next(c["checksumValue"] for c in f["checksums"] if c["algorithm"] == "SHA256")
        link = re.match(r"link to ([^;]+)", f["comment"])
        who = "; ".join(origins.get(f["SPDXID"], []))
        rows.append((f["fileName"], "link" if link else sha[:16],
                     f"-> {link[1]}" if link else who))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{path:<{width}}  {sha:<16}  {who}" for path, sha, who in rows) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else OUT
    doc = json.loads(path.read_text())
    sys.stdout.write(table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
