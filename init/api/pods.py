"""The pod RPCs (CreatePod ... Logs, Exec) over PodService: messages in and out.

Service errors become gRPC statuses in OneService's guard; this module only translates messages
and streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from grpclib import GRPCError, Status
from grpclib.server import Stream

from init.api.calls import request as _request
from init.services.pod import logs
from init.services.pod.model import Container, ContainerSpec, Pod, Resources
from init.services.pod.service import PodService
from oneproto import one_msgs

if TYPE_CHECKING:
    from init.services.task.exec import ExecProcess

LOG = logging.getLogger("mvirt-one")


def container_msg(c: Container) -> one_msgs.Container:
    state = one_msgs.ContainerState(int(c.state))
    r = c.resources or c.spec.resources
    return one_msgs.Container(id=c.id, name=c.spec.name or c.id, state=state,
                             exit_code=c.exit_code, image=c.spec.image, error_message=c.error,
                             reason=c.reason, signal=c.signal,
                             finished_at_unix_ms=c.finished_at_ms,
                             resources=resources_msg(r))


def resources_msg(r: Resources) -> one_msgs.Resources:
    return one_msgs.Resources(memory_limit_bytes=r.memory_limit_bytes,
                              cpu_limit_millis=r.cpu_limit_millis,
                              cpu_request_millis=r.cpu_request_millis, pids_limit=r.pids_limit)


def resources_of(m: one_msgs.Resources | None) -> Resources:
    if m is None:
        return Resources()
    return Resources(memory_limit_bytes=m.memory_limit_bytes,
                     cpu_limit_millis=m.cpu_limit_millis,
                     cpu_request_millis=m.cpu_request_millis, pids_limit=m.pids_limit)


def pod_msg(p: Pod) -> one_msgs.Pod:
    return one_msgs.Pod(id=p.id, name=p.name, state=one_msgs.PodState(int(p.state)),
                       containers=[container_msg(c) for c in p.containers],
                       ip_address=p.ip_address, error_message=p.error)


def spec_of(m: one_msgs.ContainerSpec) -> ContainerSpec:
    return ContainerSpec(id=m.id, name=m.name, image=m.image, command=tuple(m.command),
                         args=tuple(m.args), env=tuple(m.env), working_dir=m.working_dir,
                         resources=resources_of(m.resources))


MAX_WINDOW = 0xFFFF  # struct winsize's unsigned short


async def create(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    pod = await pods.create(r.id, r.name, [spec_of(c) for c in r.containers])
    await stream.send_message(pod_msg(pod))


async def start(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    pod = await pods.start(r.id)
    await stream.send_message(pod_msg(pod))


async def stop(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    pod = await pods.stop(r.id, float(r.timeout_seconds or pods.default_grace))
    await stream.send_message(pod_msg(pod))


async def delete(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    await pods.delete(r.id, r.force)
    await stream.send_message(one_msgs.Empty())


async def update(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    c = await pods.update(r.pod_id, r.container_id, resources_of(r.resources))
    await stream.send_message(container_msg(c))


async def get(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    pod = pods.get(r.id)
    await stream.send_message(pod_msg(pod))


async def list_pods(pods: PodService, stream: Stream[Any, Any]) -> None:
    await stream.recv_message()
    await stream.send_message(one_msgs.ListPodsResponse(pods=[pod_msg(p) for p in pods.list()]))


# --- streams of several sources ----------------------------------------------------------

# Messages read ahead of a slow client, per call: beyond them the sources wait (a process writing
# to an exec's pipe blocks on it), so the init's memory does not follow what the client ignores.
READ_AHEAD = 4


async def _send_merged(stream: Stream[Any, Any], sources: Sequence[AsyncIterator[Any]]) -> None:
    """Send the messages of every source in the order they come, until all have ended."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=READ_AHEAD)
    end = object()

    async def pump(source: AsyncIterator[Any]) -> None:
        async for msg in source:
            await queue.put(msg)
        await queue.put(end)

    tasks = [asyncio.ensure_future(pump(s)) for s in sources]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is end:
                remaining -= 1
            else:
                await stream.send_message(item)
        for t in tasks:
            await t  # a source that failed fails the call
    finally:
        for t in tasks:
            t.cancel()


# --- logs ------------------------------------------------------------------------------------

async def _one_log(pods: PodService, c: Container, name: str,
                   r: Any) -> AsyncIterator[one_msgs.LogsResponse]:
    async for chunk in logs.read(c.log_path(name), max_files=pods.log_max_files,
                                 tail=r.tail_lines, follow=r.follow, finished=c.logs_complete):
        yield one_msgs.LogsResponse(container_id=c.id, data=chunk, is_stderr=name == "stderr")


async def logs_rpc(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await _request(stream)
    pod = pods.get(r.pod_id)
    containers = [pod.container(r.container_id)] if r.container_id else pod.containers
    sources = [_one_log(pods, c, n, r) for c in containers for n in ("stdout", "stderr")]
    if not r.follow:
        for source in sources:
            async for msg in source:
                await stream.send_message(msg)
        return
    # Following several files: each is sent in the order its bytes arrive.
    await _send_merged(stream, sources)


# --- exec ------------------------------------------------------------------------------------

async def _outputs(proc: ExecProcess, name: str) -> AsyncIterator[one_msgs.ExecOutput]:
    async for data in proc.chunks(name):
        yield (one_msgs.ExecOutput(stderr=data) if name == "stderr"
               else one_msgs.ExecOutput(stdout=data))


async def exec_rpc(pods: PodService, stream: Stream[Any, Any]) -> None:
    first = await _request(stream)
    if first.WhichOneof("input") != "start":
        raise GRPCError(Status.INVALID_ARGUMENT, "the first Exec message must be `start`")
    s = first.start
    proc = await pods.exec(s.pod_id, s.container_id, list(s.command), list(s.env), tty=s.tty)

    async def feed() -> None:
        async for msg in stream:
            kind = msg.WhichOneof("input")
            if kind == "stdin":
                await proc.write(msg.stdin)
            elif kind == "resize":
                width, height = msg.resize.width, msg.resize.height
                if width > MAX_WINDOW or height > MAX_WINDOW:
                    # A terminal's size is 16 bits: refused, the session goes on.
                    LOG.warning("exec: resize to %dx%d refused (at most %d each)", width,
                                height, MAX_WINDOW)
                    continue
                proc.resize(width, height)
        await proc.close_stdin()

    feeder = asyncio.ensure_future(feed())
    try:
        await _send_merged(stream, [_outputs(proc, name) for name in proc.outputs])
        status = await proc.status
        await stream.send_message(one_msgs.ExecOutput(exit_code=proc.exit_code(status)))
    finally:
        feeder.cancel()
        # A client that went away takes its process with it, as containerd's CRI does: nobody
        # could read its output or give it input any more.
        proc.kill()
        proc.close()
