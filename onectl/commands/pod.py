"""`onectl pod create|start|stop|rm|get` and `onectl pods`: the pod lifecycle RPCs.

A pod file (podfile.py) is JSON or YAML, shaped like CreatePodRequest or a Kubernetes v1 Pod.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from onectl import podfile
from onectl.commands._common import client, non_negative_int, wants_json
from onectl.output import message_dict, print_json, print_table
from oneproto import one_pb2

HEADER = ("POD", "STATE", "IP", "CONTAINER", "IMAGE", "CSTATE", "EXIT", "REASON", "ERROR")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    pod = sub.add_parser("pod", help="create, start, stop, remove or show a pod",
                         description="The pod lifecycle: create -f FILE, start, stop, rm, get.")
    verbs = pod.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", parents=[common], help="create a pod from a file",
                              description="Call CreatePod (pulls the images, creates the "
                              "containers; they stay CREATED until start).")
    create.add_argument("-f", "--file", required=True, type=Path,
                        help="pod file, JSON or YAML: the CreatePodRequest shape or a "
                        "Kubernetes v1 Pod; - for stdin")
    create.add_argument("--start", action="store_true", help="start the pod once created")
    create.set_defaults(handler=handle_create)
    for name, helptext, handler in (("start", "start a CREATED pod", handle_start),
                                    ("get", "show one pod", handle_get)):
        p = verbs.add_parser(name, parents=[common], help=helptext)
        p.add_argument("id", metavar="POD")
        p.set_defaults(handler=handler)
    stop = verbs.add_parser("stop", parents=[common], help="stop a pod (SIGTERM, then SIGKILL)")
    stop.add_argument("id", metavar="POD")
    stop.add_argument("-t", "--timeout", type=non_negative_int, default=0, metavar="SECONDS",
                      help="grace period before SIGKILL (default: the init's, 10)")
    stop.set_defaults(handler=handle_stop)
    rm = verbs.add_parser("rm", parents=[common], help="delete a pod")
    rm.add_argument("id", metavar="POD")
    rm.add_argument("-f", "--force", action="store_true", help="stop it first if it runs")
    rm.set_defaults(handler=handle_rm)
    pods = sub.add_parser("pods", parents=[common], help="list the pods",
                          description="Call ListPods: every pod with its containers.")
    pods.set_defaults(handler=handle_list)


def _warn(message: str) -> None:
    print(f"onectl: warning: {message}", file=sys.stderr, flush=True)


def rows(pods: list[one_pb2.Pod]) -> list[list[str]]:
    out = []
    for p in pods:
        state = one_pb2.PodState.Name(p.state).removeprefix("POD_STATE_")
        for c in p.containers or [one_pb2.Container()]:
            cstate = one_pb2.ContainerState.Name(c.state).removeprefix("CONTAINER_STATE_")
            out.append([p.id, state, p.ip_address or "-", c.id, c.image, cstate,
                        str(c.exit_code), c.reason or "-",
                        c.error_message or p.error_message or ""])
    return out


def _show(args: argparse.Namespace, pods: list[one_pb2.Pod]) -> None:
    if wants_json(args):
        print_json([message_dict(p) for p in pods] if args.verb_list else message_dict(pods[0]))
    else:
        print_table(HEADER, rows(pods))


def _done(args: argparse.Namespace, pod: one_pb2.Pod) -> int:
    args.verb_list = False
    _show(args, [pod])
    return 1 if pod.state == one_pb2.POD_STATE_FAILED else 0


def handle_create(args: argparse.Namespace) -> int:
    request = podfile.load(args.file, _warn, sys.stdin.read)
    with client(args) as c:
        pod = c.call(c.stub.CreatePod, request, timeout=max(args.rpc_timeout, 600.0))
        if args.start and pod.state == one_pb2.POD_STATE_CREATED:
            pod = c.call(c.stub.StartPod, one_pb2.StartPodRequest(id=pod.id))
    return _done(args, pod)


def handle_start(args: argparse.Namespace) -> int:
    with client(args) as c:
        return _done(args, c.call(c.stub.StartPod, one_pb2.StartPodRequest(id=args.id)))


def handle_get(args: argparse.Namespace) -> int:
    with client(args) as c:
        pod = c.call(c.stub.GetPod, one_pb2.GetPodRequest(id=args.id))
    args.verb_list = False
    _show(args, [pod])
    return 0


def handle_stop(args: argparse.Namespace) -> int:
    with client(args) as c:
        pod = c.call(c.stub.StopPod, one_pb2.StopPodRequest(id=args.id,
                                                             timeout_seconds=args.timeout),
                     timeout=args.rpc_timeout + (args.timeout or 10) + 5)
    return _done(args, pod)


def handle_rm(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.call(c.stub.DeletePod, one_pb2.DeletePodRequest(id=args.id, force=args.force),
               timeout=args.rpc_timeout + 15)
    if not wants_json(args):
        print(f"deleted {args.id}")
    return 0


def handle_list(args: argparse.Namespace) -> int:
    with client(args) as c:
        reply = c.call(c.stub.ListPods, one_pb2.Empty())
    args.verb_list = True
    _show(args, list(reply.pods))
    return 0
