"""Registry faults in local mode: the registry dies mid-blob and comes back (the pull resumes and
completes), or stays away (the pull fails with UNAVAILABLE in bounded time, nothing is left
half-made, and a later pull works). The init stays healthy and its memory flat. A registry name
whose DNS server never answers does not hold the init's shutdown."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.images.relay import Relay
from tests.fixtures.local import SOURCE_INIT, LocalInit

pytestmark = pytest.mark.host


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def init(tmp_path: Path) -> Iterator[LocalInit]:
    local = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}")
    yield local
    local.stop()


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_registry_dies_mid_blob_and_comes_back(init: LocalInit, tmp_path: Path,
                                               image_registry: Registry, big_image: Pushed
                                               ) -> None:
    relay = Relay(image_registry.address, bytes_per_second=4 << 20).start()
    ref = f"{relay.address}/{big_image.name}"
    result: dict[str, object] = {}
    with init.client() as stub:
        before = _rss_kib(init.proc.pid)

        def pull() -> None:
            try:
                result["progress"] = list(stub.PullImage(
                    one_pb2.PullImageRequest(reference=ref), timeout=120))
            except grpc.RpcError as e:
                result["error"] = e

        puller = threading.Thread(target=pull)
        puller.start()
        _wait(lambda: relay.relayed > 4 << 20, 60, "a quarter of the blob")
        relay.die()
        init.wait_for(r"interrupted at \d+/\d+ bytes", 30)
        relay.start()
        puller.join(120)
        assert "error" not in result, result.get("error")
        progress = result["progress"]
        assert progress[-1].image.digest == big_image.digest  # type: ignore[index]
        # Resumed, not restarted: about one blob went over the wire, not two.
        assert relay.relayed < (16 << 20) * 1.5
        assert stub.Health(one_pb2.Empty(), timeout=10).healthy
        assert _rss_kib(init.proc.pid) - before < 30 << 10
    relay.die()


def test_registry_that_stays_away_fails_the_pull_cleanly(init: LocalInit, tmp_path: Path,
                                                         image_registry: Registry,
                                                         big_image: Pushed) -> None:
    relay = Relay(image_registry.address, bytes_per_second=8 << 20).start()
    ref = f"{relay.address}/{big_image.name}"
    errors: list[grpc.RpcError] = []
    with init.client() as stub:
        def pull() -> None:
            try:
                list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=120))
            except grpc.RpcError as e:
                errors.append(e)

        puller = threading.Thread(target=pull)
        puller.start()
        _wait(lambda: relay.relayed > 2 << 20, 60, "part of the blob")
        relay.die()
        began = time.monotonic()
        puller.join(120)
        assert errors and errors[0].code() == grpc.StatusCode.UNAVAILABLE, errors
        assert time.monotonic() - began < 60
        tmp = tmp_path / "data" / "images" / "tmp"
        assert not list(tmp.iterdir())  # the partial blob is gone
        relay.start()
        again = list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=120))
        assert again[-1].image.digest == big_image.digest
        assert stub.Health(one_pb2.Empty(), timeout=10).healthy
    relay.die()


# A loopback address of its own for a DNS server that reads queries and answers none.
SILENT_DNS = "127.83.91.7"
DNS_WAIT = 20  # s: how long the resolver waits for it (resolv.conf's timeout, one attempt)


def test_shutdown_does_not_wait_for_a_dns_server_that_never_answers(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {SILENT_DNS}\noptions timeout:{DNS_WAIT} attempts:1\n")
    # The init sees that resolv.conf alone, in a mount namespace of its own.
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind {resolv} /etc/resolv.conf && exec "$0" "$@"', *SOURCE_INIT]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dns:
        dns.bind((SILENT_DNS, 53))
        dns.settimeout(60)
        init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}", argv)
        errors: list[grpc.RpcError] = []
        try:
            with init.client() as stub:
                def pull() -> None:
                    try:
                        list(stub.PullImage(one_pb2.PullImageRequest(
                            reference="registry.mvirt-one.test/never:1"), timeout=120))
                    except grpc.RpcError as e:
                        errors.append(e)

                puller = threading.Thread(target=pull)
                puller.start()
                query, _ = dns.recvfrom(512)  # the pull waits for the resolver now
                assert b"mvirt-one" in query
                began = time.monotonic()
                init.proc.send_signal(signal.SIGTERM)
                rc = init.proc.wait(timeout=DNS_WAIT + 30)
                stopped = time.monotonic() - began
                puller.join(30)
        finally:
            init.stop()
    assert rc == 0, init.log()
    assert stopped < DNS_WAIT / 2, f"stopped {stopped:.1f} s after SIGTERM:\n{init.log()}"
    # The pull's own error reaches its client before the API closes.
    assert errors and errors[0].code() == grpc.StatusCode.UNAVAILABLE, errors
    assert "pull cancelled: the init is shutting down" in (errors[0].details() or ""), errors
    assert "Traceback" not in init.log(), init.log()
