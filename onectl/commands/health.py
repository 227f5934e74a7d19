"""`onectl health`: is the init serving, which version, how many pods and containers run."""

from __future__ import annotations

import argparse
from typing import Any

from onectl.commands._common import add_command, show, unary
from onectl.output import print_fields
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(sub, common, "health", handle, help="ask the init whether it is healthy",
                description="Call Health. Exit code 0 when healthy, 1 when the init answers "
                "healthy=false.")


def handle(args: argparse.Namespace) -> int:
    reply = unary(args, "Health", one_pb2.Empty())
    show(args, reply, lambda: print_fields([
        ("healthy", "yes" if reply.healthy else "no"), ("version", reply.version or "-"),
        ("running pods", reply.running_pods),
        ("running containers", reply.running_containers)]))
    return 0 if reply.healthy else 1
