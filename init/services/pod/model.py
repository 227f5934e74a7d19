"""Pods and containers as the pod service keeps them, and the state rules of the API: a pod is
RUNNING while any container runs, FAILED when one failed, STOPPED once all have exited."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from init.services.pod.logwriter import LogWriter


class RunningCounts(NamedTuple):
    """What Health reports."""

    pods: int  # pods in state RUNNING
    containers: int  # containers in state RUNNING, over all pods


class CState(enum.IntEnum):  # values are ContainerState's numbers in proto/one.proto
    CREATING = 1
    CREATED = 2
    RUNNING = 3
    STOPPED = 4
    FAILED = 5


class PState(enum.IntEnum):  # PodState's numbers
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    FAILED = 4


@dataclass(frozen=True)
class Resources:
    """A container's limits and requests; 0 is "not set" (the pods' shared bounds apply)."""

    memory_limit_bytes: int = 0
    cpu_limit_millis: int = 0
    cpu_request_millis: int = 0
    pids_limit: int = 0


@dataclass(frozen=True)
class ContainerSpec:
    id: str
    name: str
    image: str
    working_dir: str = ""  # "" : the image's
    command: tuple[str, ...] = ()  # () : the image's entrypoint
    args: tuple[str, ...] = ()  # () : the image's cmd (unless command is given)
    env: tuple[str, ...] = ()  # KEY=VALUE, over the image's
    resources: Resources = Resources()


@dataclass
class Container:
    spec: ContainerSpec
    runtime_id: str
    dir: Path
    state: CState = CState.CREATING
    exit_code: int = 0
    error: str = ""
    image_digest: str = ""
    pid: int = 0
    in_runtime: bool = False  # the runtime was asked to create it: it may hold state for it
    since: float = 0.0  # reaper.clock() when that began: its process is no older
    overlay: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    # Why it stopped (Kubernetes' terminated.reason), the signal that ended it, when (ms).
    reason: str = ""
    signal: int = 0
    finished_at_ms: int = 0
    cgroup: Path | None = None  # its cgroup2 directory, read when it started
    oom_kills_at_start: int = 0
    resources: Resources | None = None  # in force; None: the spec's
    pod_id: str = ""
    layer: Path | None = None  # its writable layer's directory; None: in `dir`
    # Its stdout and stderr on their way into the log files (logwriter.py).
    writers: dict[str, LogWriter] = field(default_factory=dict)

    def logs_complete(self) -> bool:
        """Every byte it will ever write is in its log files."""
        if self.writers:
            return all(w.done.is_set() for w in self.writers.values())
        return self.exited.is_set() or self.state == CState.FAILED

    @property
    def id(self) -> str:
        return self.spec.id

    def log_path(self, stream: str) -> Path:
        return self.dir / f"{stream}.log"


@dataclass
class Pod:
    id: str
    name: str
    dir: Path
    containers: list[Container]
    ip_address: str = ""
    error: str = ""
    started: bool = False
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set while CreatePod runs (or undoes it for a client that went away); done when it is over.
    settling: asyncio.Future[None] | None = None
    # StopPod was called: a creation still waiting for an image gives up at once.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> PState:
        states = {c.state for c in self.containers}
        if self.error or CState.FAILED in states:
            return PState.FAILED
        if CState.RUNNING in states:
            return PState.RUNNING
        if not self.started:
            return PState.CREATED
        return PState.STOPPED

    def container(self, cid: str) -> Container:
        from init.services.pod.errors import PodNotFound

        for c in self.containers:
            if c.id == cid:
                return c
        raise PodNotFound(f"pod {self.id} has no container {cid!r}")
