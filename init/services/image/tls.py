"""TLS for registries: what is trusted, and what a failed handshake means.

Trust is the system store (OpenSSL's default paths, and Debian's bundle where the guest ships it)
plus every CA file configured (`one.ca_file`, `--ca-file`). Verification is always on, host names
included: there is no switch to turn it off. A certificate that does not verify fails the pull at
once with the reason; it is never retried and never traded for plain HTTP.

Plain HTTP is a fallback only for registries allowed it (loopback, insecure registries), and only
when the server does not speak TLS at all, as containerd's HTTP fallback decides: the handshake
got a reply that is no TLS record (a plain-HTTP server's `HTTP/1.x 400`), or, for a registry named
without a port, nothing listens on 443.
"""

from __future__ import annotations

import os
import ssl  # this module loads with the registry client, on the first pull
import threading
from collections.abc import Sequence
from pathlib import Path

from init.services.image.errors import BadCaFile, UntrustedRegistry

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's ca-certificates
# OpenSSL's reasons for a handshake reply that is not a TLS record at all (3.0 says the first,
# later releases may say the second).
NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG"})
# Verification errors a site CA fixes: unknown issuer, self-signed leaf or chain.
_ISSUER_CODES = frozenset({2, 18, 19, 20})

_lock = threading.Lock()
_cached: tuple[tuple[object, ...], ssl.SSLContext] | None = None


def context(ca_files: Sequence[Path]) -> ssl.SSLContext:
    """The client context trusting the system store and `ca_files`; BadCaFile if one of them
    cannot be used. Reused while the files stay as they are (a replaced file is read again)."""
    global _cached
    key = tuple((str(p), _stamp(p)) for p in ca_files)
    with _lock:
        if _cached is None or _cached[0] != key:
            _cached = (key, _build(ca_files))
        return _cached[1]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _build(ca_files: Sequence[Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()  # CERT_REQUIRED, check_hostname, the default paths
    # The guest's OpenSSL looks for its own cert.pem, which the initramfs does not have.
    if SYSTEM_BUNDLE.is_file() and ssl.get_default_verify_paths().cafile != str(SYSTEM_BUNDLE):
        _load(ctx, SYSTEM_BUNDLE)
    for path in ca_files:
        _load(ctx, path)
    return ctx


def _load(ctx: ssl.SSLContext, path: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(path))
    except ssl.SSLError as e:
        why = "no certificate in it" if e.reason == "NO_CERTIFICATE_OR_CRL_FOUND" else \
            f"not PEM certificates ({e.reason or 'bad PEM data'})"
        raise BadCaFile(f"CA file {path}: {why}") from None
    except OSError as e:
        raise BadCaFile(f"CA file {path}: {(e.strerror or str(e)).lower()}") from None


def not_tls(e: BaseException) -> bool:
    """True if a handshake failed because the server answered with something that is not TLS."""
    return (isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLCertVerificationError)
            and e.reason in NOT_TLS_REASONS)


def rejection(e: BaseException, netloc: str) -> UntrustedRegistry | None:
    """The one-line error for a certificate that did not verify; None for any other error."""
    if not isinstance(e, ssl.SSLCertVerificationError):
        return None
    why = str(e.verify_message or e.reason or "verification failed").rstrip(".")
    hint = ""
    if e.verify_code in _ISSUER_CODES:
        hint = " (trust its CA with one.ca_file= in a VM or --ca-file in local mode)"
    return UntrustedRegistry(f"registry {netloc}: TLS certificate not accepted: {why}{hint}")
