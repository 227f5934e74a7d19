"""The CA certificates the guest trusts: Debian's Mozilla set, plus site CAs (EXTRA_CA_CERTS).

Registries are HTTPS, so the guest needs a trust store. The bundle is built from the certificates
Debian's `ca-certificates` package ships (/usr/share/ca-certificates/mozilla), not copied from the
build host's /etc/ssl/certs/ca-certificates.crt, which also holds whatever CAs that host added
locally (a company proxy's, say) and must not be trusted by every guest built there.

In the guest it sits where Debian puts it, /etc/ssl/certs/ca-certificates.crt, and where the
bundled OpenSSL looks by default: Debian builds OpenSSL with OPENSSLDIR=/usr/lib/ssl, so Python's
`ssl.create_default_context()` reads /usr/lib/ssl/cert.pem and /usr/lib/ssl/certs; both are links
to it, as on Debian. The links are relative, so they resolve the same in the guest and in the
tree on the build host.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

from onebuild.tools import BuildError

MOZILLA_DIR = Path("/usr/share/ca-certificates/mozilla")
BUNDLE = "etc/ssl/certs/ca-certificates.crt"  # in the tree
# OpenSSL's compiled-in defaults (OPENSSLDIR=/usr/lib/ssl) -> what they point at, relative
LINKS = {
    "usr/lib/ssl/cert.pem": "../../../etc/ssl/certs/ca-certificates.crt",
    "usr/lib/ssl/certs": "../../../etc/ssl/certs",
}
PACKAGE = "ca-certificates"

_PEM = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----"
)


def mozilla_files(directory: Path = MOZILLA_DIR) -> list[Path]:
    """The package's certificate files, sorted (the bundle's order)."""
    return sorted(directory.glob("*.crt"))


def pem_certificates(data: bytes) -> list[bytes]:
    """Every PEM CERTIFICATE block in `data`; anything else (keys, text) is left out."""
    return [match.replace(b"\r\n", b"\n") for match in _PEM.findall(data)]


def _loaded(certs: list[bytes], origin: str) -> int:
    """How many certificates OpenSSL reads from `certs`; a malformed one fails the build."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=b"\n".join(certs).decode("ascii"))
    except (ssl.SSLError, ValueError) as err:
        raise BuildError(f"{origin}: a certificate OpenSSL cannot read ({err})") from err
    return int(context.cert_store_stats()["x509"])


def extra_certificates(path: str) -> list[bytes]:
    """The certificates of EXTRA_CA_CERTS=path, checked: at least one, each readable."""
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as err:
        raise BuildError(f"EXTRA_CA_CERTS={path}: cannot read it ({err.strerror})") from err
    certs = pem_certificates(data)
    if not certs:
        raise BuildError(
            f"EXTRA_CA_CERTS={path}: no PEM certificate in it (a block from "
            "-----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----); give the CA's "
            "certificate in PEM form, e.g. `openssl x509 -in ca.der -inform der -out ca.pem`"
        )
    _loaded(certs, f"EXTRA_CA_CERTS={path}")
    return certs


def bundle(extra: str = "", directory: Path = MOZILLA_DIR) -> bytes:
    """The PEM bundle: the Mozilla set, then the certificates of `extra` (a path) if given."""
    files = mozilla_files(directory)
    certs = [cert for f in files for cert in pem_certificates(f.read_bytes())]
    if not certs:
        raise BuildError(
            f"no CA certificates in {directory}: install them with "
            f"`apt-get install {PACKAGE}` (or run `make bootstrap`)"
        )
    if _loaded(certs, str(directory)) == 0:
        raise BuildError(f"OpenSSL read no certificate from {directory}")
    if extra:
        certs += extra_certificates(extra)
    return b"".join(cert + b"\n" for cert in certs)


def install(tree: Path, extra: str = "") -> int:
    """Write the bundle and OpenSSL's default paths into `tree`; returns the bundle's size."""
    data = bundle(extra)
    dest = tree / BUNDLE
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    for link, target in LINKS.items():
        (tree / link).parent.mkdir(parents=True, exist_ok=True)
        (tree / link).symlink_to(target)
    return len(data)


def extra_fingerprint(path: str) -> str:
    """What EXTRA_CA_CERTS contributes, for doit's up-to-date check: its path and content."""
    if not path:
        return ""
    try:
        return f"{path} {hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()}"
    except OSError:
        return f"{path} unreadable"
