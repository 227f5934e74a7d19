"""Stats and Events: what the pods use now, and what happens as it happens."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from grpclib.server import Stream

from init.api.calls import request
from init.services.pod import usage
from init.services.pod.service import PodService
from oneproto import one_msgs


async def stats(pods: PodService, stream: Stream[Any, Any]) -> None:
    r = await request(stream)
    found = await pods.usage(r.pod_id)
    vm = await asyncio.to_thread(usage.vm, pods.data_dir)
    await stream.send_message(one_msgs.StatsResponse(
        time_unix_ms=int(time.time() * 1000),
        pods=[one_msgs.PodStats(pod_id=p.id, containers=[
            one_msgs.ContainerStats(
                container_id=u.container_id, cpu_usage_usec=u.cpu_usage_usec,
                memory_current_bytes=u.memory_current_bytes,
                memory_peak_bytes=u.memory_peak_bytes, pids_current=u.pids_current,
                writable_layer_bytes=u.writable_layer_bytes, log_bytes=u.log_bytes)
            for u in used]) for p, used in found],
        vm=one_msgs.VmStats(
            memory_total_bytes=vm.memory_total_bytes,
            memory_available_bytes=vm.memory_available_bytes,
            cpu_usage_usec=vm.cpu_usage_usec, cpus=vm.cpus,
            data_used_bytes=vm.data_used_bytes, data_free_bytes=vm.data_free_bytes)))


async def events(pods: PodService, stream: Stream[Any, Any]) -> None:
    await request(stream)
    listener = pods.events.subscribe()
    # The response headers say "subscribed": a client may wait for them before acting.
    await stream.send_initial_metadata()
    async for e in pods.events.listen(listener):
        await stream.send_message(one_msgs.Event(
            time_unix_ms=e.time_unix_ms, kind=e.kind, pod_id=e.pod_id,
            container_id=e.container_id, state=e.state, reason=e.reason,
            exit_code=e.exit_code, image=e.image))
