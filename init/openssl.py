"""OpenSSL is loaded by the first pull, not at boot.

Modules the init imports at boot bind OpenSSL when they are imported, though nothing at boot
uses it: asyncio and grpclib's client import `ssl` to offer TLS streams, and `hashlib` (reached
through pyroute2's DHCP client, via secrets and hmac) imports `_hashlib`. Loading libcrypto and
libssl maps ~4 MB and runs OpenSSL's initialisation: measured on the host, 4.2 MB of the init's
RSS at READY and ~15 ms of imports, several times that under TCG. They all work without it:
asyncio and grpclib set their `ssl` to None, hashlib falls back to its built-in hashes.

So the boot imports run inside `hidden()`, which makes OpenSSL's modules unimportable, and the
image service calls `load()` before its first pull: it imports them for real and hands them to
the modules imported without them. Nothing imported inside `hidden()` may need TLS before
`load()`; the init only opens TLS connections to registries.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# What loads libssl/libcrypto: the TLS module and the hashes (`_hashlib` is OpenSSL's hashlib).
HIDDEN = ("ssl", "_ssl", "_hashlib")
# Modules that keep the ssl module they found when imported (None without it), and the name
# they keep it under (the guest serves gRPC and imports no grpclib client).
_SSL_USERS = {"asyncio.base_events": "ssl", "asyncio.selector_events": "ssl",
              "asyncio.sslproto": "ssl"}
_load_lock = threading.Lock()  # pulls run in worker threads: one of them re-binds


def loaded() -> bool:
    return sys.modules.get("_ssl") is not None or sys.modules.get("_hashlib") is not None


@contextmanager
def hidden() -> Iterator[None]:
    """Imports inside see no OpenSSL. A no-op once OpenSSL is loaded (a test process, say):
    modules imported then have it already."""
    if loaded():
        yield
        return
    saved = {name: sys.modules.pop(name) for name in HIDDEN if name in sys.modules}
    for name in HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # "import X" then raises ImportError
    try:
        yield
    finally:
        for name in HIDDEN:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
        sys.modules.update(saved)


def load() -> None:
    """Import OpenSSL's modules, and re-bind those imported inside `hidden()` to them."""
    with _load_lock:
        _load()


def _load() -> None:
    import hashlib
    import ssl

    if hashlib.sha256.__module__ != "_hashlib":
        # hashlib chose its constructors without OpenSSL; its functions are looked up on the
        # module at each call (hashlib.sha256(...)), so a reload reaches every caller.
        importlib.reload(hashlib)
    for name, attribute in _SSL_USERS.items():
        module = sys.modules.get(name)
        if module is not None and getattr(module, attribute, ssl) is None:
            setattr(module, attribute, ssl)
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        # Defined at import only when ssl was there; the TLS transport catches it.
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # type: ignore[attr-defined]
