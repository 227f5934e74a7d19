"""target/mvirt-one.spdx.json: every file of the initramfs and every UKI section with its sha256
and origin; no origin fails the build; the same inputs give the same bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onebuild import initramfs, inspect, reproducible, sbom, uki
from onebuild.tools import BuildError

BUILT = pytest.mark.skipif(
    not (uki.OUT.is_file() and initramfs.MANIFEST.is_file()
         and (initramfs.TREE / "init").is_file()),
    reason="needs `make one` outputs in target/")


def test_debian_licenses_from_copyright_files() -> None:
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: someone\nLicense: GPL-2+ or Apache-2\n text\n\n"
            "Files: lib/*\nLicense: Expat\n")
    assert sbom.debian_license_of(dep5, "x") == "GPL-2.0-or-later OR Apache-2.0"
    no_star = dep5.replace("Files: *", "Files: src/*")
    assert sbom.debian_license_of(no_star, "x") == "(GPL-2.0-or-later OR Apache-2.0) AND MIT"
    assert sbom.debian_license_of("This is the Debian prepackaged version", "glibc") \
        == "LGPL-2.1-or-later"
    assert sbom.debian_license_of("free text", "unknown") == "NOASSERTION"
    odd = dep5.replace("GPL-2+ or Apache-2", "Some odd name")
    assert sbom.debian_license_of(odd, "x").startswith("LicenseRef-Some-odd-name")


def test_a_debian_package_has_its_version_and_license() -> None:
    libc = sbom.Debian().owner(Path("/usr/lib/x86_64-linux-gnu/libc.so.6"))
    assert libc.name == "libc6" and libc.version and libc.license == "LGPL-2.1-or-later"
    assert libc.kind == "debian" and "glibc" in libc.detail


def test_python_distributions_have_version_and_license() -> None:
    assert sbom.python_origin("h2").license == "MIT"
    assert sbom.python_origin("hyperframe").license == "MIT"  # from its classifier
    pyroute2 = sbom.python_origin("pyroute2")
    assert pyroute2.version and pyroute2.license != "NOASSERTION"


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    shutil.copyfile(initramfs.SKELETON / "etc" / "hostname", tree / "etc" / "hostname")
    return tree


@BUILT
def test_a_file_of_no_known_origin_fails(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    shutil.copyfile("/bin/true", tree / "mystery")  # an ELF no package has by that name
    (tree / "notes.txt").write_text("who wrote me?\n")
    with pytest.raises(BuildError, match="no known origin") as e:
        sbom._tree_origins(tree, sbom.Resolver(tree))
    assert "/mystery" in str(e.value) and "/notes.txt" in str(e.value)


@BUILT
def test_libraries_are_found_by_content_or_by_build_id_when_stripped(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    lib = tree / "usr" / "lib"
    lib.mkdir(parents=True)
    shutil.copyfile("/usr/lib/x86_64-linux-gnu/libz.so.1", lib / "libz.so.1")
    # Other bytes, the same link (as PyInstaller's --strip leaves a library): one more section.
    (tmp_path / "extra").write_bytes(b"not from Debian")
    subprocess.run(["objcopy", "--add-section", f".sbomtest={tmp_path / 'extra'}",
                    "/usr/lib/x86_64-linux-gnu/libffi.so.8", str(lib / "libffi.so.8")],
                   check=True)
    (tree / "lib").symlink_to("usr/lib")
    found = {e.path: e for e in sbom._tree_origins(tree, sbom.Resolver(tree))}
    assert [o.name for o in found["/usr/lib/libz.so.1"].origins] == ["zlib1g"]
    assert [o.name for o in found["/usr/lib/libffi.so.8"].origins] == ["libffi8"]
    assert "build-id" in found["/usr/lib/libffi.so.8"].note
    assert found["/etc/hostname"].origins == {sbom.project()}
    assert found["/lib"].kind == "link" and found["/lib"].data == b"usr/lib"


def _example() -> list[sbom.Entry]:
    libc = sbom.Origin("debian", "libc6", "2.36", "LGPL-2.1-or-later", "source package glibc")
    return [sbom.Entry("/usr/lib/libc.so.6", b"\x7fELF", "file", {libc}),
            sbom.Entry("/lib", b"usr/lib", "link", {sbom.project()}),
            sbom.Entry("mvirt-one.efi", b"MZ", "archive", {sbom.project()})]


def test_the_document_is_spdx_2_3_and_the_same_every_time() -> None:
    first = sbom.render(sbom.document(_example(), 1_700_000_000))
    assert first == sbom.render(sbom.document(list(reversed(_example())), 1_700_000_000))
    doc = json.loads(first)
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert doc["documentNamespace"].endswith(hashlib.sha256(b"MZ").hexdigest())
    ids = [p["SPDXID"] for p in doc["packages"]] + [f["SPDXID"] for f in doc["files"]]
    assert len(ids) == len(set(ids))
    libc = next(f for f in doc["files"] if f["fileName"] == "./initramfs/usr/lib/libc.so.6")
    assert {"algorithm": "SHA256", "checksumValue": hashlib.sha256(b"\x7fELF").hexdigest()} \
        in libc["checksums"]
    assert any(c["algorithm"] == "SHA1" for c in libc["checksums"])
    table = sbom.table(doc)
    assert "libc6 2.36 (LGPL-2.1-or-later)" in table and "-> usr/lib" in table


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    if not sbom.OUT.is_file():
        pytest.skip("needs target/mvirt-one.spdx.json (`make one`)")
    doc: dict[str, Any] = json.loads(sbom.OUT.read_text())
    return doc


@BUILT
def test_the_built_document_lists_every_file_and_section(built: dict[str, Any]) -> None:
    names = {f["fileName"] for f in built["files"]}
    assert {sbom.file_name(path) for path in sbom.manifest_paths()} <= names
    sections = {s.name for s in inspect.uki_sections(uki.OUT)}
    assert {f"./{uki.OUT.name}:{s}" for s in sections} <= names
    assert {f"./{uki.OUT.name}:{s}" for s in uki.sections()} <= names
    origin_of = {r["spdxElementId"] for r in built["relationships"]
                 if r["relationshipType"] == "GENERATED_FROM"}
    assert {f["SPDXID"] for f in built["files"]} <= origin_of
    packages = {p["name"]: p for p in built["packages"]}
    assert {"libc6", "linux", "crun", "pyinstaller", "grpclib", "mvirt-one"} <= set(packages)
    assert all(p.get("versionInfo") for p in built["packages"])
    assert "kernel.config sha256" in packages["linux"]["comment"]


@BUILT
def test_the_build_gives_the_same_bytes_again(tmp_path: Path) -> None:
    """What `doit sbom` writes from the tree as it is now, twice: byte for byte the same."""
    found = sbom.entries()
    epoch = reproducible.epoch()
    assert sbom.render(sbom.document(found, epoch)) \
        == sbom.render(sbom.document(sbom.entries(), epoch))


@BUILT
def test_the_printer_prints_a_line_per_file(built: dict[str, Any]) -> None:
    out = subprocess.run([sys.executable, "-m", "onebuild.sbom", str(sbom.OUT)],
                         capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == len(built["files"])
    assert any(line.startswith("./initramfs/init ") and "libc6-dev" in line
               for line in out.splitlines())
