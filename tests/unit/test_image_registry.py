"""Registry client choices that need no network, and the lazy imports that keep boot fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from init.services.image.reference import parse
from init.services.image.registry import RegistryClient, is_loopback

ROOT = Path(__file__).resolve().parents[2]


def test_https_unless_loopback_or_insecure() -> None:
    assert RegistryClient(parse("registry.example/app")).scheme == "https"
    assert RegistryClient(parse("10.0.2.2:5000/app")).scheme == "https"
    assert RegistryClient(parse("10.0.2.2:5000/app"), insecure={"10.0.2.2:5000"}).scheme == "http"
    assert RegistryClient(parse("reg.lan:5000/app"), insecure={"reg.lan"}).scheme == "http"
    for loopback in ("127.0.0.1:5000/app", "localhost:5000/app", "[::1]:5000/app",
                     "127.1.2.3/app"):
        assert RegistryClient(parse(loopback)).scheme == "http", loopback


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
            "init.app._image_service(from_cmdline(''))\n"
            "heavy = ['tarfile', 'http.client', 'zstandard', 'gzip',\n"
            "         'init.services.image.puller', 'init.services.image.store']\n"
            "print(' '.join(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ""
