"""`onectl logs [-f] [--tail N] POD [CONTAINER]`: stdout here to stdout, stderr to stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from onectl.commands._common import client, non_negative_int
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("logs", parents=[common], help="print a pod's logs",
                            description="Call Logs: what the pod's containers wrote, kept by "
                            "the init after they exit. With -f, follow until they exit.")
    parser.add_argument("pod", metavar="POD")
    parser.add_argument("container", metavar="CONTAINER", nargs="?", default="",
                        help="one container (default: all)")
    parser.add_argument("-f", "--follow", action="store_true", help="follow until exit")
    parser.add_argument("--tail", type=non_negative_int, default=0, metavar="N",
                        help="only the last N lines of each stream (default all)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    request = one_pb2.LogsRequest(pod_id=args.pod, container_id=args.container,
                                  follow=args.follow, tail_lines=args.tail)
    import grpc  # not at import: parsing and `run` must not load grpcio

    with client(args) as c:
        # Following has no deadline: it ends when the containers exit (or on ^C).
        timeout = None if args.follow else args.rpc_timeout
        try:
            for m in c.stub.Logs(request, timeout=timeout):
                out = sys.stderr if m.is_stderr else sys.stdout
                out.buffer.write(m.data)
                out.flush()
        except grpc.RpcError as e:
            raise c.translate(e) from None
    return 0
