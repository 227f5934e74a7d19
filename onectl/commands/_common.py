"""What the API commands share: registering a command, the connection settings from the global
options, one unary call, and printing its answer as JSON or text."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from onectl import address
from onectl.errors import UsageError
from onectl.output import message_dict, print_json
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


def add_command(sub: Any, common: argparse.ArgumentParser, name: str,
                handler: Callable[[argparse.Namespace], int], *, help: str,
                description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help,
                                                     description=description)
    parser.set_defaults(handler=handler)
    return parser


def unary(args: argparse.Namespace, rpc: str, request: Message) -> Any:
    """Call the unary RPC named `rpc` (e.g. "Health") and return its answer."""
    with client(args) as c:
        return c.call(getattr(c.stub, rpc), request)


def wants_json(args: argparse.Namespace) -> bool:
    return bool(args.output == "json")


def show(args: argparse.Namespace, reply: Message, text: Callable[[], None]) -> None:
    """`-o json`: the whole answer as JSON; otherwise `text()` prints it for people."""
    if wants_json(args):
        print_json(message_dict(reply))
    else:
        text()


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
