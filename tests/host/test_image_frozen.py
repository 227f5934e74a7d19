"""The frozen init (target/init, what the initramfs carries) pulls: catches modules the freeze
left out, which only show when the first pull imports them (http.client, tarfile, the zstd library,
and OpenSSL, which the init loads only then), the stdlib's "idna" codec (socket and ssl encode a
registry's host name with it; it needs stringprep and unicodedata), and what its trimmed OpenSSL
(onebuild/openssllib.py) would lack: TLS 1.2 and 1.3 with RSA and EC certificates, and
verification failures that say why."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import grpc
import pytest

from init.services.image import zstd
from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed, TlsRegistries
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry
from tests.fixtures.images.tls import Ca, ServerCert
from tests.fixtures.local import FROZEN, LocalInit, serving

pytestmark = pytest.mark.host


def test_frozen_init_pulls_zstd_and_over_tls_by_host_name(
        tmp_path: Path, image_registry: Registry, zstd_image: Pushed,
        tls_registries: TlsRegistries, busybox_image: Pushed) -> None:
    tls = tls_registries.get("good")
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [str(_frozen()), "--ca-file", str(tls_registries.ca.cert)])
    try:
        with init.client() as stub:
            assert "libcrypto" not in _maps(init.proc.pid)  # not loaded by the boot imports
            for ref, image in ((f"{image_registry.address}/{zstd_image.name}", zstd_image),
                               (f"localhost:{tls.port}/{busybox_image.name}", busybox_image)):
                request = one_pb2.PullImageRequest(reference=ref)
                last = list(stub.PullImage(request, timeout=120))[-1]
                assert last.status == "done" and last.image.digest == image.digest, init.log()
        rootfs = tmp_path / "data" / "images" / "rootfs" / zstd_image.digest.partition(":")[2]
        assert os.access(rootfs / "bin" / "busybox", os.X_OK)
        maps = _maps(init.proc.pid)
        assert "libcrypto" in maps
        # The bundle's own decompression-only libzstd, not the host's.
        assert f"/_internal/{zstd.LIBRARY}" in maps and "libzstd.so" not in maps
    finally:
        init.proc.terminate()
        init.proc.wait(10)


# (certificate key, the one protocol version the server speaks)
_SERVERS = (("rsa", ssl.TLSVersion.TLSv1_2), ("ec", ssl.TLSVersion.TLSv1_2),
            ("rsa", ssl.TLSVersion.TLSv1_3), ("ec", ssl.TLSVersion.TLSv1_3))


def test_frozen_init_speaks_tls_1_2_and_1_3_with_rsa_and_ec_certificates(
        tmp_path: Path, image_registry: Registry, tls_registries: TlsRegistries,
        busybox_image: Pushed) -> None:
    """TLS servers in front of the registry, each with one protocol version and one key type:
    the frozen init pulls from every one (verifying the chain, signatures of both kinds and the
    host name); a certificate from another CA and an expired one fail with OpenSSL's reason."""
    ca = tls_registries.ca
    proxies = [_tls_proxy(image_registry, ca.issue(f"frozen-{key}", key=key), version)
               for key, version in _SERVERS]
    stranger = _tls_proxy(image_registry, Ca.create(tmp_path / "other-ca").issue("stranger"),
                          ssl.TLSVersion.TLSv1_3)
    expired = tls_registries.get("expired")
    try:
        # A failed pull is the client's error, not the init's: it logs no traceback.
        with serving(tmp_path, [str(_frozen()), "--ca-file", str(ca.cert)],
                     bad_log="Traceback") as init, init.client() as stub:
            for proxy, (key, version) in zip(proxies, _SERVERS, strict=True):
                ref = f"localhost:{proxy.port}/{busybox_image.name}"
                last = list(stub.PullImage(one_pb2.PullImageRequest(reference=ref),
                                           timeout=120))[-1]
                assert last.status == "done", (key, version, init.log())
                assert last.image.digest == busybox_image.digest
                print(key, proxy.server.handshakes[0])  # the cipher suite, with -s
                versions = {v for v, _ in proxy.server.handshakes}
                assert versions == {"TLSv1.2" if version == ssl.TLSVersion.TLSv1_2
                                    else "TLSv1.3"}, (key, proxy.server.handshakes)
            for port, reason in ((stranger.port, "unable to get local issuer certificate"),
                                 (expired.port, "certificate has expired")):
                ref = f"localhost:{port}/{busybox_image.name}"
                with pytest.raises(grpc.RpcError) as err:
                    list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=60))
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value
                assert reason in str(err.value.details()), err.value.details()
            # The bundle's OpenSSL, and hashlib's OpenSSL backend, are what the pulls ran on.
            maps = _maps(init.proc.pid)
            assert "/_internal/libcrypto.so.3" in maps and "/_hashlib." in maps
    finally:
        for proxy in (*proxies, stranger):
            proxy.stop()


def _tls_proxy(registry: Registry, cert: ServerCert, version: ssl.TLSVersion) -> Proxy:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = version
    context.load_cert_chain(cert.cert, cert.key)
    return Proxy(registry.address, tls=context).start()


def _frozen() -> Path:
    frozen = Path(os.environ.get("MVIRT_ONE_FROZEN_INIT", FROZEN))
    if not frozen.exists():
        pytest.fail(f"{frozen} missing: build it with `.venv/bin/doit init` (make test does)")
    return frozen


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()
