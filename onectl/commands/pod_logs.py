"""`onectl logs [-f] [--tail N] POD [CONTAINER]`: stdout here to stdout, stderr to stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from onectl.commands._common import add_command, client, non_negative_int
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(sub, common, "logs", handle, help="print a pod's logs",
                         description="Call Logs: what the pod's containers wrote, kept by the "
                         "init after they exit. With -f, follow until they exit.")
    parser.add_argument("pod", metavar="POD")
    parser.add_argument("container", metavar="CONTAINER", nargs="?", default="",
                        help="one container (default: all)")
    parser.add_argument("-f", "--follow", action="store_true", help="follow until exit")
    parser.add_argument("--tail", type=non_negative_int, default=0, metavar="N",
                        help="only the last N lines of each stream (default all)")


def handle(args: argparse.Namespace) -> int:
    request = one_pb2.LogsRequest(pod_id=args.pod, container_id=args.container,
                                  follow=args.follow, tail_lines=args.tail)
    with client(args) as c:
        # Following has no deadline: it ends when the containers exit (or on ^C).
        timeout = None if args.follow else args.rpc_timeout
        for m in c.stream(c.stub.Logs, request, timeout=timeout):
            out = sys.stderr if m.is_stderr else sys.stdout
            out.buffer.write(m.data)
            out.flush()
    return 0
