"""Pulling over HTTPS with verification: docker-registry serving TLS on loopback with certificates
from a CA the test makes. The init runs in local mode (`python -m init --ca-file`), the pulls go
through `onectl pull`, as users see them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from init.services.image import ImageService
from init.services.image.errors import BadCaFile, UntrustedRegistry
from tests.fixtures.images.fixtures import Pushed, TlsRegistries
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, LocalInit
from tests.fixtures.paths import ROOT

pytestmark = pytest.mark.host

# A certificate that does not verify fails at once: no retry, no back-off. The registry client's
# back-off sleeps 0.5 + 1 + 2 s over its 4 attempts; a failure is "at once" when it takes less
# than 2 s over the same onectl call that does nothing (an `images` call of the same init,
# timed just before in the same test): Python's start and grpcio's import, which a loaded host
# can stretch to several seconds, count on both sides.
RETRY_COST = 2.0


def onectl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "onectl", "-a", address, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory,
             tls_registries: TlsRegistries) -> Iterator[str]:
    """The address of an init that trusts the test CA (besides the system store)."""
    tmp = tmp_path_factory.mktemp("trusting")
    local = LocalInit(tmp, f"unix:{tmp / 'api.sock'}",
                      argv=[*SOURCE_INIT, "--ca-file", str(tls_registries.ca.cert)])
    try:
        local.wait_for(r"phase ready")
        yield local.listen
    finally:
        local.stop()


@pytest.fixture(scope="module")
def not_trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of an init with the system store only."""
    tmp = tmp_path_factory.mktemp("not-trusting")
    local = LocalInit(tmp, f"unix:{tmp / 'api.sock'}")
    try:
        local.wait_for(r"phase ready")
        yield local.listen
    finally:
        local.stop()


def failed_pull(address: str, ref: str) -> tuple[str, float]:
    """(the one line `onectl pull` printed, seconds it took beyond an onectl call that does
    nothing) for a pull that must fail."""
    start = time.monotonic()
    listed = onectl(address, "images")
    baseline = time.monotonic() - start
    assert listed.returncode == 0, listed.stderr
    start = time.monotonic()
    result = onectl(address, "pull", ref)
    took = time.monotonic() - start
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # the figures and the message, with -s
    print(f"{took:.2f} s ({baseline:.2f} s for `onectl images`): {lines[0]}")
    return lines[0], took - baseline


def test_https_only_loopback_registry_with_the_ca(trusting: str, tls_registries: TlsRegistries,
                                                  busybox_image: Pushed) -> None:
    reg = tls_registries.get("good")
    pulled = onectl(trusting, "pull", f"{reg.address}/{busybox_image.name}")
    assert pulled.returncode == 0, pulled.stderr
    assert busybox_image.digest in pulled.stdout


def test_plain_http_loopback_registry_still_works(trusting: str, image_registry: Registry,
                                                  busybox_image: Pushed) -> None:
    pulled = onectl(trusting, "pull", f"{image_registry.address}/{busybox_image.name}")
    assert pulled.returncode == 0, pulled.stderr
    assert busybox_image.digest in pulled.stdout


def test_untrusted_issuer_fails_at_once(not_trusting: str, tls_registries: TlsRegistries,
                                        busybox_image: Pushed) -> None:
    reg = tls_registries.get("good")
    line, took = failed_pull(not_trusting, f"{reg.address}/{busybox_image.name}")
    assert "FAILED_PRECONDITION" in line and f"registry {reg.address}" in line
    assert "unable to get local issuer certificate" in line and "--ca-file" in line
    assert took < RETRY_COST, f"{took:.1f} s more than onectl images: retried?"


@pytest.mark.parametrize("kind, reason", [
    ("other-name", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("expired", "certificate has expired"),
])
def test_bad_certificate_fails_at_once(kind: str, reason: str, trusting: str,
                                       tls_registries: TlsRegistries,
                                       busybox_image: Pushed) -> None:
    reg = tls_registries.get(kind)
    line, took = failed_pull(trusting, f"{reg.address}/{busybox_image.name}")
    assert "FAILED_PRECONDITION" in line and f"registry {reg.address}" in line
    assert reason in line
    assert took < RETRY_COST, f"{took:.1f} s more than onectl images: retried?"


def test_host_name_is_checked(tmp_path: Path, tls_registries: TlsRegistries,
                              busybox_image: Pushed) -> None:
    """`localhost` is in the good certificate, so it verifies; the same server named by a name
    the certificate lacks does not (the other-name certificate is for a name that does not
    resolve here, so the name check is made against localhost instead)."""
    good, other = tls_registries.get("good"), tls_registries.get("other-name")
    service = ImageService(tmp_path / "data", ca_files=[tls_registries.ca.cert])
    try:
        ref = f"localhost:{good.port}/{busybox_image.name}"
        assert asyncio.run(service.pull(ref)).digest == busybox_image.digest
        with pytest.raises(UntrustedRegistry, match=r"Hostname mismatch.*'localhost'"):
            asyncio.run(service.pull(f"localhost:{other.port}/{busybox_image.name}"))
    finally:
        service.close()


@pytest.mark.parametrize("content, reason", [
    (None, "no such file or directory"),
    (b"", "no certificate in it"),
    (b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
     "not PEM certificates"),
])
def test_unusable_ca_file_is_a_clear_error(tmp_path: Path, content: bytes | None, reason: str,
                                           tls_registries: TlsRegistries,
                                           busybox_image: Pushed) -> None:
    ca_file = tmp_path / "site-ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    service = ImageService(tmp_path / "data", ca_files=[ca_file])
    try:
        reg = tls_registries.get("good")
        with pytest.raises(BadCaFile, match=f"CA file {ca_file}: {reason}"):
            asyncio.run(service.pull(f"{reg.address}/{busybox_image.name}"))
        ca_file.write_bytes(tls_registries.ca.cert.read_bytes())  # fixed: read again
        assert asyncio.run(service.pull(f"{reg.address}/{busybox_image.name}")).digest \
            == busybox_image.digest
    finally:
        service.close()
