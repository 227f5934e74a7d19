"""onectl's server addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from onectl.address import Address, parse
from onectl.errors import Exit, UsageError


@pytest.mark.parametrize(("spec", "expected"), [
    ("vsock-uds:/run/vm/vm.vsock:1024", Address("vsock-uds", path=Path("/run/vm/vm.vsock"),
                                                port=1024)),
    ("vsock-uds:/run/vm/vm.vsock", Address("vsock-uds", path=Path("/run/vm/vm.vsock"), port=1024)),
    ("vsock-uds:rel/vm.vsock:5000", Address("vsock-uds", path=Path("rel/vm.vsock"), port=5000)),
    ("unix:/tmp/one.sock", Address("unix", path=Path("/tmp/one.sock"))),
    ("tcp:127.0.0.1:50051", Address("tcp", host="127.0.0.1", port=50051)),
    ("tcp:[::1]:50051", Address("tcp", host="::1", port=50051)),
    ("tcp:localhost:1", Address("tcp", host="localhost", port=1)),
])
def test_parses(spec: str, expected: Address) -> None:
    assert parse(spec) == expected


@pytest.mark.parametrize("spec", ["vsock-uds:/a.sock:1024", "unix:/x", "tcp:127.0.0.1:5",
                                  "tcp:[::1]:50051"])
def test_round_trips_through_str(spec: str) -> None:
    assert str(parse(spec)) == spec


@pytest.mark.parametrize(("spec", "why"), [
    ("/tmp/one.sock", "lacks a scheme"),
    ("vsock:3:1024", "unknown transport"),
    ("unix:", "no socket path"),
    ("vsock-uds::1024", "no socket path"),
    ("tcp:127.0.0.1", "needs tcp:HOST:PORT"),
    ("tcp:127.0.0.1:http", "bad TCP port"),
    ("tcp:127.0.0.1:70000", "bad TCP port"),
    ("tcp::80", "needs tcp:HOST:PORT"),
    ("unix:/" + "x" * 120, "longer than 107 bytes"),
])
def test_rejects_with_a_usage_error(spec: str, why: str) -> None:
    with pytest.raises(UsageError, match=why) as info:
        parse(spec)
    assert info.value.code == Exit.USAGE
