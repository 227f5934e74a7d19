"""`onectl shutdown`: stop the containers within a grace period and power the VM off."""

from __future__ import annotations

import argparse
from typing import Any

from onectl.commands._common import add_command, client, non_negative_int, wants_json
from onectl.output import print_json
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(sub, common, "shutdown", handle, help="shut the guest down",
                         description="Call Shutdown. The init answers, then stops the "
                         "containers (SIGTERM, SIGKILL after the grace period) and powers off.")
    parser.add_argument("--timeout", dest="grace", type=non_negative_int, default=0,
                        metavar="SECONDS", help="grace period for containers before SIGKILL "
                        "(0: the init's default, 10)")


def handle(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.call(c.stub.Shutdown, one_pb2.ShutdownRequest(timeout_seconds=args.grace))
        address = c.settings.address
    if wants_json(args):
        print_json({"shutdown": "accepted", "timeout_seconds": args.grace})
    else:
        print(f"shutdown accepted by {address}")
    return 0
