"""Registries that misbehave or try to misuse what the client trusts them with: credentials on
redirects and downgrades, malformed digests. Loopback only: the fixture proxies in front of the
test registry, one of them speaking TLS (and plain HTTP on the same port, to see what a client
sends after a downgrade)."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from init.app import Init
from init.services.image import ImageService
from init.services.image import manifest as mf
from init.services.image.auth import Credential
from init.services.image.errors import AuthenticationError, PullCancelled, RegistryError
from init.services.image.reference import parse
from init.services.image.registry import RegistryClient
from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed, TlsRegistries
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, LocalInit
from tests.fixtures.paths import ROOT

pytestmark = pytest.mark.host

ALICE = Credential("alice", "wonderland")


def pull(service: ImageService, ref: str):  # type: ignore[no-untyped-def]
    return asyncio.run(service.pull(ref))


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


# --- stalls and cancellation: a registry that trickles ------------------------------------------

def config_of(client: RegistryClient, tag: str) -> mf.Descriptor:
    body, content_type = client.manifest(tag)
    return mf.parse_manifest(body, mf.media_type_of(body, content_type, tag), tag).config


@pytest.mark.parametrize("trickle, options, reason", [
    (0.05, {"stall_window": 1.0, "stall_bytes": 1024}, r"stalled: \d+ bytes in 1 s"),
    (2.0, {"timeout": 0.5}, "timed out"),
])
def test_a_stalled_blob_fails(image_proxy: Proxy, busybox_image: Pushed, trickle: float,
                              options: dict[str, float], reason: str) -> None:
    """Too slow (under the rate floor) or silent (past the per-read timeout): a failed attempt
    each, then an error; never a transfer that goes on for ever."""
    client = RegistryClient(parse(f"{image_proxy.address}/{busybox_image.name}"), attempts=2,
                            backoff=0.1, **options)  # type: ignore[arg-type]
    try:
        config = config_of(client, "latest")
        image_proxy.trickle = trickle
        start = time.monotonic()
        with pytest.raises(RegistryError, match=f"{reason}.* after 2 attempts"):
            client.fetch_blob(config.digest, config.size, io.BytesIO())
        assert time.monotonic() - start < 10
    finally:
        client.close()


def test_cancel_all_stops_a_trickling_pull_at_once(image_service: ImageService,
                                                   image_proxy: Proxy,
                                                   busybox_image: Pushed) -> None:
    # A byte every 20 s: a cancel that waited for the transfer instead of stopping it would end
    # the pull only when the next byte came, ~20 s after the trickle started.
    trickle = 20.0
    image_proxy.trickle = trickle
    ref = f"{image_proxy.address}/{busybox_image.name}"

    async def pull_then_cancel() -> float:
        pulling = asyncio.ensure_future(image_service.pull(ref))
        assert await asyncio.to_thread(image_proxy.trickling.wait, 30)
        start = time.monotonic()
        image_service.cancel_all()
        with pytest.raises(PullCancelled, match="shutting down"):
            await pulling
        return time.monotonic() - start

    took = asyncio.run(pull_then_cancel())
    print(f"pull cancelled {took:.3f} s after cancel_all")
    # Half the interval: far above a loaded host's delays, far below the next byte.
    assert took < trickle / 2, took
    store = image_service.store
    assert list(store.tmp.iterdir()) == [] and list(store.images.iterdir()) == []
    with pytest.raises(PullCancelled):  # and no new pull starts
        pull(image_service, ref)


def test_sigterm_during_a_trickling_pull(tmp_path: Path, image_proxy: Proxy,
                                         busybox_image: Pushed) -> None:
    """Local mode: SIGTERM while a pull reads a byte every 5 s; the init exits within its
    grace period and the stop margin, and the client's pull fails."""
    grace = 2.0
    image_proxy.trickle = 5.0
    local = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                      argv=[*SOURCE_INIT, "--shutdown-grace", str(grace)])
    client = None
    try:
        local.wait_for("phase ready")
        client = subprocess.Popen(
            [sys.executable, "-m", "onectl", "-a", local.listen, "pull",
             f"{image_proxy.address}/{busybox_image.name}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert image_proxy.trickling.wait(30)
        start = time.monotonic()
        local.proc.send_signal(signal.SIGTERM)
        try:
            code = local.proc.wait(timeout=grace + Init.STOP_MARGIN + 10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"init still running {time.monotonic() - start:.0f} s after "
                                 f"SIGTERM:\n{local.log()}") from None
        took = time.monotonic() - start
        print(f"init exited {took:.2f} s after SIGTERM during a trickling pull")
        assert code == 0 and took < grace + Init.STOP_MARGIN, local.log()
        client.communicate(timeout=30)
        assert client.returncode != 0  # the pull failed (how depends on the API's last words)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        if local.proc.poll() is None:
            local.proc.kill()


def test_stoppod_during_a_trickling_pull(tmp_path: Path, image_proxy: Proxy,
                                         busybox_image: Pushed) -> None:
    """StopPod on a pod whose CreatePod waits for a pull that trickles a byte every 5 s: it
    returns within its grace and a margin, and the pod is FAILED saying it was stopped."""
    image_proxy.trickle = 5.0
    local = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}")
    created: dict[str, object] = {}
    try:
        with local.client() as stub:
            image = f"{image_proxy.address}/{busybox_image.name}"
            spec = one_pb2.ContainerSpec(id="c", image=image)

            def create() -> None:
                created["pod"] = stub.CreatePod(
                    one_pb2.CreatePodRequest(id="slow", containers=[spec]), timeout=60)

            creator = threading.Thread(target=create)
            creator.start()
            assert image_proxy.trickling.wait(30)
            start = time.monotonic()
            stopped = stub.StopPod(one_pb2.StopPodRequest(id="slow", timeout_seconds=1),
                                   timeout=30)
            took = time.monotonic() - start
            creator.join(30)
            print(f"StopPod returned {took:.2f} s into a trickling pull")
            assert took < 1 + 5  # grace + margin, never the pull's own pace
            assert stopped.state == one_pb2.POD_STATE_FAILED
            pod = created["pod"]
            assert "stopped while image" in pod.error_message  # type: ignore[attr-defined]
            assert stub.Health(one_pb2.Empty(), timeout=10).healthy
    finally:
        image_proxy.trickle = None
        local.stop()
