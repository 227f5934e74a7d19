"""`onectl stats [POD] [--watch]`: what each container uses, as `docker stats` shows it; and
`onectl events`: what happens in the guest, one line (or JSON object) per event."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from onectl.commands._common import add_command, client, positive_float, wants_json
from onectl.output import message_dict, print_json, print_table
from oneproto import one_pb2

HEADER = ("POD", "CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PEAK", "PIDS", "WRITTEN",
          "LOGS")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen: the table redrawn in place


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(sub, common, "stats", handle, help="what each container uses",
                         description="Call Stats twice, an interval apart, and show each "
                         "container's CPU share over it (100% is one CPU), memory against its "
                         "limit (or the VM's memory), peak memory, processes, bytes written over "
                         "its image and its logs; then the VM's line.")
    parser.add_argument("pod", metavar="POD", nargs="?", default="")
    parser.add_argument("--watch", action="store_true", help="redraw until interrupted")
    parser.add_argument("--interval", type=positive_float, default=2.0, metavar="SECONDS",
                        help="between the two samples, and between redraws (default 2)")
    events = add_command(sub, common, "events", handle_events, help="follow what happens",
                         description="Call Events: containers started and exited (with their "
                         "reason), OOM kills, pod states, images pulled and removed.")
    events.set_defaults(pod=None)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def rows(before: one_pb2.StatsResponse, after: one_pb2.StatsResponse,
         limits: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """Each container's figures, CPU as the share of one CPU between the two samples."""
    wall_usec = max((after.time_unix_ms - before.time_unix_ms) * 1000, 1)
    earlier = {(p.pod_id, c.container_id): c.cpu_usage_usec
               for p in before.pods for c in p.containers}
    out = []
    for p in after.pods:
        for c in p.containers:
            used = c.cpu_usage_usec - earlier.get((p.pod_id, c.container_id), c.cpu_usage_usec)
            limit = limits.get((p.pod_id, c.container_id)) or after.vm.memory_total_bytes
            out.append({"pod": p.pod_id, "container": c.container_id,
                        "cpu_percent": round(100 * max(used, 0) / wall_usec, 1),
                        "memory_bytes": c.memory_current_bytes, "memory_limit_bytes": limit,
                        "memory_percent": round(100 * c.memory_current_bytes / limit, 1)
                        if limit else 0.0,
                        "memory_peak_bytes": c.memory_peak_bytes, "pids": c.pids_current,
                        "writable_layer_bytes": c.writable_layer_bytes,
                        "log_bytes": c.log_bytes})
    vm_cpu = after.vm.cpu_usage_usec - before.vm.cpu_usage_usec
    out.append({"pod": "(vm)", "container": "", "cpu_percent": round(100 * vm_cpu / wall_usec, 1),
                "memory_bytes": after.vm.memory_total_bytes - after.vm.memory_available_bytes,
                "memory_limit_bytes": after.vm.memory_total_bytes, "memory_percent": round(
                    100 * (1 - after.vm.memory_available_bytes
                           / max(after.vm.memory_total_bytes, 1)), 1),
                "memory_peak_bytes": 0, "pids": 0,
                "writable_layer_bytes": after.vm.data_used_bytes, "log_bytes": 0})
    return out


def _table(found: list[dict[str, Any]]) -> list[list[str]]:
    return [[r["pod"], r["container"], f"{r['cpu_percent']:.1f}%",
             f"{_size(r['memory_bytes'])} / {_size(r['memory_limit_bytes'])}",
             f"{r['memory_percent']:.1f}%", _size(r["memory_peak_bytes"]) if r["pod"] != "(vm)"
             else "", str(r["pids"]) if r["pod"] != "(vm)" else "",
             _size(r["writable_layer_bytes"]), _size(r["log_bytes"]) if r["pod"] != "(vm)"
             else ""] for r in found]


def handle(args: argparse.Namespace) -> int:
    with client(args) as c:
        def sample() -> one_pb2.StatsResponse:
            got: one_pb2.StatsResponse = c.call(c.stub.Stats, one_pb2.StatsRequest(pod_id=args.pod))
            return got

        def limits() -> dict[tuple[str, str], int]:
            pods = ([c.call(c.stub.GetPod, one_pb2.GetPodRequest(id=args.pod))] if args.pod
                    else list(c.call(c.stub.ListPods, one_pb2.Empty()).pods))
            return {(p.id, k.id): k.resources.memory_limit_bytes for p in pods
                    for k in p.containers}

        before = sample()
        while True:
            time.sleep(args.interval)
            after = sample()
            found = rows(before, after, limits())
            if wants_json(args):
                print_json(found)
            else:
                if args.watch:
                    sys.stdout.write(CLEAR)
                print_table(HEADER, _table(found))
            sys.stdout.flush()
            if not args.watch:
                return 0
            before = after


def handle_events(args: argparse.Namespace) -> int:
    with client(args) as c:
        for event in c.stream(c.stub.Events, one_pb2.EventsRequest(), timeout=None):
            if wants_json(args):
                print_json(message_dict(event))
            else:
                detail = " ".join(f"{k}={v}" for k, v in (
                    ("state", event.state), ("reason", event.reason),
                    ("exit_code", event.exit_code if event.kind == "container_exited" else ""),
                    ("image", event.image)) if v != "")
                print(f"{time.strftime('%H:%M:%S', time.localtime(event.time_unix_ms / 1000))} "
                      f"{event.kind} {event.pod_id}{'/' if event.container_id else ''}"
                      f"{event.container_id} {detail}".rstrip())
            sys.stdout.flush()
    return 0
