"""Registries that misbehave or try to misuse what the client trusts them with: credentials on
redirects and downgrades, malformed digests. Loopback only: the fixture proxies in front of the
test registry, one of them speaking TLS (and plain HTTP on the same port, to see what a client
sends after a downgrade)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from init.services.image import ImageService
from init.services.image.auth import Credential
from init.services.image.errors import AuthenticationError, RegistryError
from tests.fixtures.images.fixtures import Pushed, TlsRegistries
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry

pytestmark = pytest.mark.host

ALICE = Credential("alice", "wonderland")


def pull(service: ImageService, ref: str):  # type: ignore[no-untyped-def]
    return asyncio.run(service.pull(ref))


@pytest.fixture(scope="module")
def _tls_proxy(image_registry: Registry, tls_registries: TlsRegistries) -> Iterator[Proxy]:
    cert = tls_registries.ca.issue("proxy")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    proxy = Proxy(image_registry.address, tls=context).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def tls_proxy(_tls_proxy: Proxy) -> Iterator[Proxy]:
    _tls_proxy.reset()
    yield _tls_proxy
    _tls_proxy.reset()


@pytest.fixture
def other_proxy(image_registry: Registry) -> Iterator[Proxy]:
    proxy = Proxy(image_registry.address).start()
    yield proxy
    proxy.stop()


def service_for(tmp_path: Path, tls_registries: TlsRegistries, registry: str,
                credential: Credential | None = None) -> ImageService:
    return ImageService(tmp_path / "data", credentials={registry: credential} if credential
                        else None, ca_files=[tls_registries.ca.cert])


def test_token_over_https_with_login(tmp_path: Path, tls_proxy: Proxy,
                                     tls_registries: TlsRegistries,
                                     busybox_image: Pushed) -> None:
    tls_proxy.auth, tls_proxy.token_needs_login = "bearer", True
    service = service_for(tmp_path, tls_registries, tls_proxy.address, ALICE)
    assert pull(service, f"{tls_proxy.address}/{busybox_image.name}").digest \
        == busybox_image.digest
    assert {scheme for scheme, _, _ in tls_proxy.seen} == {"https"}
    assert tls_proxy.token_requests == 1


def test_registry_token_does_not_follow_a_downgrade(tmp_path: Path, tls_proxy: Proxy,
                                                    tls_registries: TlsRegistries,
                                                    busybox_image: Pushed) -> None:
    """Blobs redirected from https://host:port to http://host:port (the same host and port):
    the token stays behind, so the plain-HTTP hop is refused by the server."""
    tls_proxy.auth = "bearer"
    tls_proxy.redirect_blobs, tls_proxy.redirect_scheme = tls_proxy.address, "http"
    service = service_for(tmp_path, tls_registries, tls_proxy.address)
    with pytest.raises(RegistryError, match="HTTP 401"):
        pull(service, f"{tls_proxy.address}/{busybox_image.name}")
    plain = [(path, auth) for scheme, path, auth in tls_proxy.seen if scheme == "http"]
    assert plain and all(auth is None for _, auth in plain), plain


def test_login_does_not_follow_a_redirect_to_another_host(tmp_path: Path, image_proxy: Proxy,
                                                          other_proxy: Proxy,
                                                          tls_registries: TlsRegistries,
                                                          busybox_image: Pushed) -> None:
    image_proxy.auth, image_proxy.token_needs_login = "bearer", True
    image_proxy.redirect_token = other_proxy.address
    other_proxy.token_needs_login = True
    service = service_for(tmp_path, tls_registries, image_proxy.address, ALICE)
    with pytest.raises(AuthenticationError, match="refused the credentials"):
        pull(service, f"{image_proxy.address}/{busybox_image.name}")
    assert [auth for _, path, auth in other_proxy.seen if path.startswith("/token")] == [None]
    assert any(auth and auth.startswith("Basic ") for _, path, auth in image_proxy.seen
               if path.startswith("/token"))  # where the login was given, it went


def test_login_does_not_go_down_to_plain_http(tmp_path: Path, tls_proxy: Proxy,
                                              tls_registries: TlsRegistries,
                                              busybox_image: Pushed) -> None:
    tls_proxy.auth, tls_proxy.token_needs_login = "bearer", True
    tls_proxy.redirect_token, tls_proxy.redirect_scheme = tls_proxy.address, "http"
    service = service_for(tmp_path, tls_registries, tls_proxy.address, ALICE)
    with pytest.raises(AuthenticationError, match="refused the credentials"):
        pull(service, f"{tls_proxy.address}/{busybox_image.name}")
    plain = [auth for scheme, path, auth in tls_proxy.seen
             if scheme == "http" and path.startswith("/token")]
    assert plain == [None]


def test_plain_http_realm_refused_for_an_https_registry(tmp_path: Path, tls_proxy: Proxy,
                                                        tls_registries: TlsRegistries,
                                                        busybox_image: Pushed) -> None:
    tls_proxy.auth, tls_proxy.realm_scheme = "bearer", "http"
    service = service_for(tmp_path, tls_registries, tls_proxy.address, ALICE)
    with pytest.raises(AuthenticationError, match="plain HTTP for an HTTPS registry"):
        pull(service, f"{tls_proxy.address}/{busybox_image.name}")
    assert tls_proxy.token_requests == 0


@pytest.mark.parametrize("digest", [
    "md5:" + "0" * 32,
    "sha256:../../../../tmp/mvirt-one-pwned",
    "sha256:" + "A" * 64,
    "sha256:" + "0" * 63,
    "sha512:" + "0" * 64,
])
def test_malformed_docker_content_digest_is_refused(image_service: ImageService,
                                                    image_proxy: Proxy, busybox_image: Pushed,
                                                    digest: str) -> None:
    image_proxy.content_digest = digest
    with pytest.raises(RegistryError, match="malformed Docker-Content-Digest"):
        pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert not image_proxy.requests("GET")  # nothing fetched by it
    store = image_service.store
    assert list(store.images.iterdir()) == [] and store.read_refs() == {}
    assert not Path("/tmp/mvirt-one-pwned").exists()


@pytest.mark.parametrize("digest", ["md5:" + "0" * 32, "sha256:../../../etc/passwd",
                                    "sha256:", "sha512:" + "f" * 64])
def test_store_refuses_paths_from_malformed_digests(tmp_path: Path, digest: str) -> None:
    from init.services.image.errors import InvalidReference
    from init.services.image.store import Store

    store = Store(tmp_path / "images")
    store.open()
    try:
        for path_of in (store.blob_path, store.meta_path, store.rootfs):
            with pytest.raises(InvalidReference):
                path_of(digest)
        with pytest.raises(InvalidReference):
            store.put_bytes(digest, b"{}")
        assert store.find_image("sha256:" + "0" * 64) is None
    finally:
        store.close()
