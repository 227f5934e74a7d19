"""The initramfs tree: the OCI runtime under its own name and as /usr/bin/oci-runtime, the CA
bundle where the guest's OpenSSL looks, and mke2fs, each run or read from the tree alone.

The trees are assembled from the frozen init this checkout built (`doit init`) into temporary
directories; target/ is left alone.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from onebuild import cacerts, elfdeps, freeze, initramfs, runtime
from onebuild.tools import BuildError
from tests.buildsteps import certs

RUNC = Path(shutil.which("runc") or "/usr/sbin/runc")  # Debian's runc: a dynamic ELF


def _frozen_init() -> Path:
    if not (freeze.ONEDIR / freeze.NAME).exists():
        pytest.fail(f"{freeze.ONEDIR} missing: run `doit init` first")
    return freeze.ONEDIR


def _tree(base: Path, runtime_choice: str = "", extra_ca_certs: str = "") -> Path:
    runtime_dir = base / "runtime"
    runtime.build(runtime_choice, out_dir=runtime_dir)
    tree = base / "root"
    initramfs.assemble(tree, frozen_init=_frozen_init(), runtime_dir=runtime_dir,
                       extra_ca_certs=extra_ca_certs)
    return tree


@pytest.fixture(scope="module")
def crun_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("crun"))


def _in_tree(tree: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv chrooted into `tree` with /proc mounted (a private mount namespace)."""
    command = f'mount -t proc proc "{tree}/proc" && exec chroot "{tree}" "$@"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command,
                           "sh", *argv], capture_output=True, text=True, timeout=120)


# --- the OCI runtime -------------------------------------------------------------------------


def test_the_built_crun_is_shipped_as_oci_runtime(crun_tree: Path) -> None:
    link = crun_tree / initramfs.OCI_RUNTIME_LINK
    assert link.readlink() == Path("crun")
    proc = _in_tree(crun_tree, "/usr/bin/oci-runtime", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("crun version 1.8.1")


def test_runtime_override_is_shipped_under_its_name_and_as_oci_runtime(tmp_path: Path) -> None:
    tree = _tree(tmp_path, str(RUNC))
    assert (tree / "usr/bin/runc").read_bytes() == RUNC.read_bytes()
    assert (tree / initramfs.OCI_RUNTIME_LINK).readlink() == Path("runc")
    assert not (tree / "usr/bin/crun").exists()
    # runc is dynamic: its libseccomp came along, and it runs from the tree alone.
    assert (tree / "lib/x86_64-linux-gnu/libseccomp.so.2").is_file()
    proc = _in_tree(tree, "/usr/bin/oci-runtime", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("runc version")


# --- CA certificates -------------------------------------------------------------------------


def _inside(tree: Path, path: str) -> Path:
    """`path` as the guest resolves it: symlinks followed within the tree."""
    resolved = (tree / path.lstrip("/")).resolve()
    assert resolved.is_relative_to(tree.resolve()), f"{path} leaves the tree: {resolved}"
    return resolved


def _openssl_defaults(libcrypto: Path) -> tuple[str, str]:
    """The default CA file and directory compiled into a libcrypto (what Python's ssl loads)."""
    code = (
        "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]);"
        "[setattr(getattr(lib, f), 'restype', ctypes.c_char_p) for f in"
        " ('X509_get_default_cert_file', 'X509_get_default_cert_dir')];"
        "print(lib.X509_get_default_cert_file().decode());"
        "print(lib.X509_get_default_cert_dir().decode())"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code, str(libcrypto)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], out[1]


def test_the_guest_openssl_finds_the_mozilla_bundle_by_default(crun_tree: Path) -> None:
    libcryptos = [p for p in elfdeps.elves(crun_tree) if p.name.startswith("libcrypto.so")]
    assert libcryptos, "the frozen init carries no libcrypto"
    bundle = crun_tree / cacerts.BUNDLE
    for libcrypto in libcryptos:
        cafile, capath = _openssl_defaults(libcrypto)
        assert _inside(crun_tree, cafile) == bundle.resolve()
        assert _inside(crun_tree, capath) == bundle.parent.resolve()
    data = bundle.read_bytes()
    count = len(cacerts.pem_certificates(data))
    assert count > 100, count
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(bundle))
    assert context.cert_store_stats()["x509_ca"] == count
    # the Debian package's set, not the build host's local additions
    assert data == b"".join(p.read_bytes().rstrip(b"\n") + b"\n"
                            for p in cacerts.mozilla_files())


@pytest.fixture(scope="module")
def site_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA (ca.pem) and a server certificate it signed for 127.0.0.1 (server.pem)."""
    directory = tmp_path_factory.mktemp("site-ca")
    certs.make_ca(directory)
    certs.make_server_cert(directory)
    return directory


def _handshake(cafile: Path, server_dir: Path) -> None:
    """A TLS handshake to a loopback server whose certificate the site CA signed."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_dir / "server.pem", server_dir / "server.key")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            client_ctx = ssl.create_default_context(cafile=str(cafile))
            with socket.create_connection(listener.getsockname(), timeout=30) as sock, \
                    client_ctx.wrap_socket(sock, server_hostname="localhost"):
                pass
        finally:
            thread.join(timeout=30)


def test_extra_ca_certs_are_trusted_by_the_shipped_bundle(tmp_path: Path, site_ca: Path) -> None:
    # The file may hold more than certificates (a key, text): only certificates are shipped.
    given = tmp_path / "site.pem"
    given.write_bytes(b"my site CA\n" + (site_ca / "ca.pem").read_bytes()
                      + (site_ca / "ca.key").read_bytes())
    with_site = tmp_path / "with"
    plain = tmp_path / "plain"
    cacerts.install(with_site, str(given))
    cacerts.install(plain)
    shipped = (with_site / cacerts.BUNDLE).read_bytes()
    assert shipped.startswith((plain / cacerts.BUNDLE).read_bytes())
    assert shipped.endswith((site_ca / "ca.pem").read_bytes())
    assert b"PRIVATE KEY" not in shipped and b"my site CA" not in shipped
    _handshake(_inside(with_site, "/usr/lib/ssl/cert.pem"), site_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_inside(plain, "/usr/lib/ssl/cert.pem"), site_ca)


def test_extra_ca_certs_reach_the_assembled_tree(tmp_path: Path, site_ca: Path) -> None:
    tree = _tree(tmp_path, extra_ca_certs=str(site_ca / "ca.pem"))
    assert (tree / cacerts.BUNDLE).read_bytes().endswith((site_ca / "ca.pem").read_bytes())


@pytest.mark.parametrize(("content", "message"), [
    (b"", "no PEM certificate in it"),
    (b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n",
     "no PEM certificate in it"),
    (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
     "a certificate OpenSSL cannot read"),
])
def test_extra_ca_certs_without_a_certificate_fail_clearly(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(BuildError, match=f"EXTRA_CA_CERTS={bad}: {message}"):
        cacerts.install(tmp_path / "tree", str(bad))
    with pytest.raises(BuildError, match="cannot read it"):
        cacerts.bundle(str(tmp_path / "absent.pem"))


def test_a_missing_mozilla_set_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="apt-get install ca-certificates"):
        cacerts.bundle(directory=tmp_path)


# --- mke2fs ----------------------------------------------------------------------------------


def test_the_shipped_mke2fs_formats_a_disk_from_the_tree_alone(crun_tree: Path) -> None:
    assert (crun_tree / "sbin/mkfs.ext4").readlink() == Path("mke2fs")
    assert (crun_tree / "etc/mke2fs.conf").read_bytes() == Path("/etc/mke2fs.conf").read_bytes()
    assert elfdeps.missing(crun_tree, initramfs.LIB_DIRS) == {}
    disk = crun_tree / "tmp" / "data.img"
    with disk.open("wb") as f:
        f.truncate(64 * 2**20)
    # the options the init formats a blank data disk with
    proc = _in_tree(crun_tree, "/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-L", "mvirt-one-data",
                    "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", "/tmp/data.img")
    assert proc.returncode == 0, proc.stderr
    with disk.open("rb") as f:
        f.seek(1024)
        superblock = f.read(1024)
    magic, = struct.unpack_from("<H", superblock, 56)
    assert magic == 0xEF53
    assert superblock[120:136].rstrip(b"\0") == b"mvirt-one-data"
    features = subprocess.run(["dumpe2fs", "-h", str(disk)], capture_output=True, text=True,
                              check=True).stdout
    # ext4 as Debian's mke2fs.conf (shipped) defines it
    for feature in ("has_journal", "extent", "64bit", "metadata_csum"):
        assert feature in features

