"""What happens in the init, told to whoever listens (the Events RPC): containers starting and
exiting, OOM kills, pod states, images pulled and removed.

Each listener has a bounded queue: a listener that does not read loses the oldest events and is
told how many (an `events_lost` event), and the services never wait for a listener.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

QUEUE = 256  # events a listener may be behind


@dataclass(frozen=True)
class Event:
    kind: str
    pod_id: str = ""
    container_id: str = ""
    state: str = ""
    reason: str = ""
    exit_code: int = 0
    image: str = ""
    time_unix_ms: int = 0


class _Listener:
    def __init__(self) -> None:
        self.queue: deque[Event] = deque()
        self.lost = 0
        self.wake = asyncio.Event()

    def put(self, event: Event) -> None:
        if len(self.queue) >= QUEUE:
            self.queue.popleft()
            self.lost += 1
        self.queue.append(event)
        self.wake.set()


class Events:
    def __init__(self) -> None:
        self._listeners: set[_Listener] = set()

    def publish(self, event: Event) -> None:
        """From the event loop's thread."""
        stamped = replace(event, time_unix_ms=int(time.time() * 1000))
        for listener in self._listeners:
            listener.put(stamped)

    def subscribe(self) -> _Listener:
        """Events from now on are kept for this listener; unsubscribe when done."""
        listener = _Listener()
        self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: _Listener) -> None:
        self._listeners.discard(listener)

    async def listen(self, listener: _Listener | None = None) -> AsyncIterator[Event]:
        listener = listener or self.subscribe()
        try:
            while True:
                await listener.wake.wait()
                listener.wake.clear()
                if listener.lost:
                    yield Event("events_lost", exit_code=listener.lost,
                                time_unix_ms=int(time.time() * 1000))
                    listener.lost = 0
                while listener.queue:
                    yield listener.queue.popleft()
        finally:
            self._listeners.discard(listener)
