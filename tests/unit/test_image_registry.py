"""Registry client choices that need no network, and the lazy imports that keep boot fast."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

from init.services.image import tls
from init.services.image.reference import parse
from init.services.image.registry import RegistryClient, is_loopback

ROOT = Path(__file__).resolve().parents[2]


def test_https_first_plain_http_allowed_only_for_loopback_or_insecure() -> None:
    def client(name: str, insecure: set[str] | None = None) -> RegistryClient:
        return RegistryClient(parse(name), insecure=insecure or set())

    for name in ("registry.example/app", "10.0.2.2:5000/app", "127.0.0.1:5000/app"):
        assert client(name).scheme == "https", name
    assert not client("registry.example/app").may_use_http
    assert not client("10.0.2.2:5000/app").may_use_http
    assert client("10.0.2.2:5000/app", {"10.0.2.2:5000"}).may_use_http
    assert client("reg.lan:5000/app", {"reg.lan"}).may_use_http
    for loopback in ("127.0.0.1:5000/app", "localhost:5000/app", "[::1]:5000/app",
                     "127.1.2.3/app"):
        assert client(loopback).may_use_http, loopback


def _handshake_error(reply: bytes) -> BaseException:
    """What a TLS client gets from a server that answers its ClientHello with `reply`."""
    client, server = socket.socketpair()
    with client, server:
        server.sendall(reply)
        server.shutdown(socket.SHUT_WR)
        try:
            ssl.create_default_context().wrap_socket(client, server_hostname="registry.test")
        except (OSError, ssl.SSLError) as e:
            return e
    raise AssertionError("handshake succeeded")


def test_fallback_only_when_the_server_does_not_speak_tls() -> None:
    plain_http = _handshake_error(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    assert tls.not_tls(plain_http)
    assert not tls.not_tls(_handshake_error(b""))  # a connection closed is not "no TLS"
    assert not tls.not_tls(ConnectionResetError())
    allowed = RegistryClient(parse("10.0.2.2:5000/app"), insecure={"10.0.2.2:5000"})
    assert allowed._falls_back("https", "10.0.2.2:5000", plain_http)
    assert not allowed._falls_back("https", "10.0.2.2:5000", ConnectionRefusedError())
    assert not allowed._falls_back("https", "storage.example", plain_http)  # not the registry
    assert not RegistryClient(parse("10.0.2.2:5000/app"))._falls_back(
        "https", "10.0.2.2:5000", plain_http)
    # Named without a port: nothing on 443 means "try 80", as containerd does.
    portless = RegistryClient(parse("localhost/app"))
    assert portless._falls_back("https", "localhost", ConnectionRefusedError())


def test_docker_hub_name_and_endpoint() -> None:
    """Parsed only: nothing here contacts docker.io."""
    client = RegistryClient(parse("alpine"))
    assert client.base == "https://registry-1.docker.io/v2/library/alpine"


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.2.2") and not is_loopback("example.com")


def test_nothing_heavy_is_imported_before_the_first_pull() -> None:
    code = ("import sys, init.app\n"
            "from init.config import from_cmdline\n"
            "from init.services.events import Events\n"
            "init.app._image_service(from_cmdline(''), Events())\n"
            "heavy = ['tarfile', 'http.client', 'init.services.image.zstd', 'gzip',\n"
            "         'init.services.image.puller', 'init.services.image.store']\n"
            "print(' '.join(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ""
