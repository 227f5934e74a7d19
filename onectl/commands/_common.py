"""What the API commands share: the connection settings from the global options."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from onectl import address
from onectl.errors import UsageError
from onectl.settings import Settings

if TYPE_CHECKING:
    from onectl.client import Client

ADDRESS_ENV = "ONECTL_ADDRESS"


def client(args: argparse.Namespace) -> Client:
    if not args.address:
        raise UsageError(f"no server address: pass -a/--address (or set ${ADDRESS_ENV}), e.g. "
                         "vsock-uds:/run/vm/vm.vsock:1024, unix:/run/one.sock or "
                         "tcp:127.0.0.1:50051")
    from onectl.client import Client  # grpcio only for commands that call the API

    return Client(Settings(address.parse(args.address), timeout=args.rpc_timeout,
                           connect_timeout=args.connect_timeout))


def wants_json(args: argparse.Namespace) -> bool:
    return bool(args.output == "json")


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0 (a bad value is a usage error, exit code 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value
