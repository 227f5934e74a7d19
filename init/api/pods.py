"""What the API needs from the pod service for Health and Shutdown, and a stand-in until then.

The pod service (issue 6) implements `PodSupervisor`; the entry point hands it to `Init`, which
passes it to the API. Until then `NoPods` reports the truth: no pod can exist, so the counts are 0
and there is nothing to stop.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class RunningCounts(NamedTuple):
    pods: int  # pods in state RUNNING
    containers: int  # containers in state RUNNING, over all pods


class PodSupervisor(Protocol):
    def running_counts(self) -> RunningCounts:
        """The counts Health reports. Called on every Health call: must be cheap, never block."""
        ...

    async def stop_all(self, grace_seconds: float) -> None:
        """Stop every running container: SIGTERM, then SIGKILL after `grace_seconds`; return when
        all have exited. Called once on the way down (Shutdown RPC, signal or power button),
        while the API still serves; the caller bounds the wait, so it may be cancelled."""
        ...


class NoPods:
    """The pod service before pods exist (issue 6)."""

    def running_counts(self) -> RunningCounts:
        return RunningCounts(0, 0)

    async def stop_all(self, grace_seconds: float) -> None:
        return None
