"""`onectl health`: is the init serving, which version, how many pods and containers run."""

from __future__ import annotations

import argparse
from typing import Any

from onectl.commands._common import client, wants_json
from onectl.output import message_dict, print_fields, print_json
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("health", parents=[common], help="ask the init whether it is healthy",
                            description="Call Health. Exit code 0 when healthy, 1 when the init "
                            "answers healthy=false.")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    with client(args) as c:
        reply = c.call(c.stub.Health, one_pb2.Empty())
    if wants_json(args):
        print_json(message_dict(reply))
    else:
        print_fields([("healthy", "yes" if reply.healthy else "no"),
                      ("version", reply.version or "-"),
                      ("running pods", reply.running_pods),
                      ("running containers", reply.running_containers)])
    return 0 if reply.healthy else 1
