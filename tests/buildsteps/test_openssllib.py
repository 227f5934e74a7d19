"""The frozen init's OpenSSL (onebuild/openssllib.py): libssl and libcrypto linked from Debian's
archives, exporting exactly what _ssl and _hashlib (and libssl) import, in Debian's version
nodes, with Debian's compiled-in directories, smaller; and a missing import is caught."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from onebuild import cacerts, elfdeps, freeze, openssllib, usrimage
from onebuild.tools import BuildError, run

pytestmark = pytest.mark.host

DEBIAN = Path("/usr/lib/x86_64-linux-gnu")
PYTHON = Path(sys.base_prefix) / "bin" / "python3.11"  # Debian's, whose modules these are
MODULES = ("_ssl", "_hashlib")


def _module(name: str) -> Path:
    return next(Path(str(sysconfig.get_config_var("DESTSHARED"))).glob(f"{name}.cpython-*.so"))


def _debian_tree(directory: Path) -> Path:
    """Debian's two libraries with Debian python's two modules: a frozen tree's OpenSSL part."""
    directory.mkdir()
    for lib in openssllib.LIBRARIES:
        shutil.copy(DEBIAN / lib, directory / lib)
    for name in MODULES:
        shutil.copy(_module(name), directory)
    return directory


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = _debian_tree(tmp_path_factory.mktemp("openssllib") / "tree")
    openssllib.replace(tree)
    return tree


def test_the_version_script_puts_each_symbol_in_its_node() -> None:
    nodes = [("V_1", None), ("V_2", "V_1"), ("V_3", "V_2")]
    script = openssllib.version_script({("b", "V_1"), ("a", "V_1"), ("c", "V_2")}, nodes)
    assert script == ("V_1 { global: a; b; local: *; };\n"
                      "V_2 { global: c; } V_1;\n"
                      "V_3 { } V_2;\n")
    with pytest.raises(BuildError, match="V_9"):
        openssllib.version_script({("d", "V_9")}, nodes)


def test_the_pair_exports_exactly_what_its_consumers_import(pair: Path) -> None:
    modules = [_module(name) for name in MODULES]
    ssl_needs = {s for m in modules for s in openssllib.imports(m).get(openssllib.LIBSSL, ())}
    assert openssllib.exports(pair / openssllib.LIBSSL) == ssl_needs
    crypto_needs = {s for elf in (*modules, pair / openssllib.LIBSSL)
                    for s in openssllib.imports(elf).get(openssllib.LIBCRYPTO, ())}
    assert openssllib.exports(pair / openssllib.LIBCRYPTO) == crypto_needs
    assert ("OPENSSL_strcasecmp", "OPENSSL_3.0.3") in crypto_needs  # libssl's, a newer node
    assert openssllib.unresolved(pair) == []
    for lib in openssllib.LIBRARIES:
        assert openssllib.version_nodes(pair / lib) == openssllib.version_nodes(DEBIAN / lib)
    assert elfdeps.read(pair / openssllib.LIBCRYPTO).needed == ("libc.so.6",)
    assert set(elfdeps.read(pair / openssllib.LIBSSL).needed) == {"libcrypto.so.3", "libc.so.6"}


def test_the_pair_is_smaller(pair: Path, tmp_path: Path) -> None:
    sizes = {}
    for name, directory in (("debian", DEBIAN), ("trimmed", pair)):
        tree = tmp_path / name
        tree.mkdir()
        for lib in openssllib.LIBRARIES:
            shutil.copy(directory / lib, tree / lib)
        image = tmp_path / f"{name}.squashfs"
        run(["mksquashfs", tree, image, *usrimage.COMPRESSION, "-quiet", "-no-progress"],
            quiet=True)
        sizes[name] = ([(tree / lib).stat().st_size for lib in openssllib.LIBRARIES],
                       image.stat().st_size)
    print(sizes)  # (libssl, libcrypto) bytes, and the two in the /usr image's compression
    (debian_ssl, debian_crypto), debian_image = sizes["debian"]
    (ssl, crypto), image = sizes["trimmed"]
    assert crypto < debian_crypto - 1_000_000 and ssl < debian_ssl - 100_000
    assert image < debian_image - 250_000


def _compiled_in(lib: Path) -> dict[str, str]:
    return dict(re.findall(rb'(OPENSSLDIR|ENGINESDIR|MODULESDIR): "([^"]*)"', lib.read_bytes()))


def test_openssl_looks_where_debian_and_the_guest_put_things(pair: Path) -> None:
    dirs = _compiled_in(pair / openssllib.LIBCRYPTO)
    assert dirs == _compiled_in(DEBIAN / openssllib.LIBCRYPTO)
    # The guest's CA bundle is linked at OPENSSLDIR/cert.pem (onebuild/cacerts.py).
    assert f"{dirs[b'OPENSSLDIR'].decode().lstrip('/')}/cert.pem" in cacerts.LINKS


# Run by Debian's python on the pair: OpenSSL's own digests (no fallback to hashlib's built-in
# ones), the default verify paths, and a TLS context that loads the system's CA bundle.
_CHECK = """\
import hashlib, ssl, _hashlib
assert _hashlib.new("sha256", b"abc").hexdigest() == hashlib.sha256(b"abc").hexdigest() == \\
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
assert _hashlib.openssl_sha512(b"abc").hexdigest().startswith("ddaf35a193617aba")
assert hashlib.sha512.__module__ == "_hashlib"
assert ssl.get_default_verify_paths().openssl_cafile == "/usr/lib/ssl/cert.pem"
context = ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt")
assert context.cert_store_stats()["x509_ca"] > 50
maps = open("/proc/self/maps").read()
print(sorted({line.split()[-1] for line in maps.splitlines() if "libcrypto" in line}))
"""


def _run_on(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYTHON), "-I", "-S", "-c", _CHECK], capture_output=True,
                          text=True, timeout=60, env={"LD_LIBRARY_PATH": str(tree)})


def test_python_runs_its_hashes_and_tls_on_the_pair(pair: Path) -> None:
    result = _run_on(pair)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([str(pair / openssllib.LIBCRYPTO)])


def test_a_missing_import_is_caught(pair: Path, tmp_path: Path) -> None:
    """A libcrypto without one symbol libssl imports: `unresolved` names it, and the dynamic
    linker refuses the pair as the guest's would."""
    tree = tmp_path / "tree"
    shutil.copytree(pair, tree)
    consumers = [*openssllib.consumers(tree), tree / openssllib.LIBSSL]
    needs = {s for elf in consumers for s in openssllib.imports(elf)[openssllib.LIBCRYPTO]}
    openssllib.link(openssllib.LIBCRYPTO, needs - {("X509_verify_cert", "OPENSSL_3.0.0")},
                    DEBIAN / openssllib.LIBCRYPTO, tree / openssllib.LIBCRYPTO)
    assert openssllib.unresolved(tree) == ["libssl.so.3: X509_verify_cert@OPENSSL_3.0.0"]
    result = _run_on(tree)
    assert result.returncode != 0 and "undefined symbol: X509_verify_cert" in result.stderr


def test_the_frozen_tree_carries_the_pair() -> None:
    internal = freeze.ONEDIR / "_internal"
    if not internal.is_dir():
        pytest.fail(f"{freeze.ONEDIR} missing: run `doit init` first")
    assert openssllib.unresolved(internal) == []
    for lib in openssllib.LIBRARIES:
        assert (internal / lib).stat().st_size < (DEBIAN / lib).stat().st_size - 100_000
