"""`onectl update POD CONTAINER`: a running container's limits, replaced (as `docker update`)."""

from __future__ import annotations

import argparse
from typing import Any

from onectl import quantity
from onectl.commands._common import add_command, client, wants_json
from onectl.errors import UsageError
from onectl.output import message_dict, print_json, print_table
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(sub, common, "update", handle, help="change a running container's "
                         "limits", description="Call UpdateContainer: the limits given replace "
                         "the container's; those not given go back to none (memory, CPU) or the "
                         "default (pids).")
    parser.add_argument("pod", metavar="POD")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("--memory", help="memory limit, e.g. 64Mi")
    parser.add_argument("--cpus", help="CPU limit, e.g. 250m or 0.5")
    parser.add_argument("--cpu-request", help="CPU request (a weight), e.g. 100m")
    parser.add_argument("--pids", type=int, default=0, help="process and thread limit")


def handle(args: argparse.Namespace) -> int:
    try:
        resources = one_pb2.Resources(
            memory_limit_bytes=quantity.memory_bytes(args.memory) if args.memory else 0,
            cpu_limit_millis=quantity.cpu_millis(args.cpus) if args.cpus else 0,
            cpu_request_millis=quantity.cpu_millis(args.cpu_request) if args.cpu_request
            else 0,
            pids_limit=args.pids)
    except quantity.QuantityError as e:
        raise UsageError(str(e)) from None
    with client(args) as c:
        got = c.call(c.stub.UpdateContainer, one_pb2.UpdateContainerRequest(
            pod_id=args.pod, container_id=args.container, resources=resources))
    if wants_json(args):
        print_json(message_dict(got))
    else:
        r = got.resources
        print_table(("CONTAINER", "MEMORY", "CPU", "CPU REQUEST", "PIDS"),
                    [[got.id, str(r.memory_limit_bytes or "-"),
                      f"{r.cpu_limit_millis}m" if r.cpu_limit_millis else "-",
                      f"{r.cpu_request_millis}m" if r.cpu_request_millis else "-",
                      str(r.pids_limit or "-")]])
    return 0
