"""onectl stats: CPU as the share of one CPU between two samples, memory against the limit (or
the VM's memory), the VM's own line."""

from __future__ import annotations

from onectl.commands import stats
from oneproto import one_pb2


def _sample(ms: int, cpu: int, vm_cpu: int) -> one_pb2.StatsResponse:
    return one_pb2.StatsResponse(
        time_unix_ms=ms,
        pods=[one_pb2.PodStats(pod_id="p", containers=[one_pb2.ContainerStats(
            container_id="c", cpu_usage_usec=cpu, memory_current_bytes=16 << 20,
            memory_peak_bytes=20 << 20, pids_current=3, log_bytes=10)])],
        vm=one_pb2.VmStats(memory_total_bytes=100 << 20, memory_available_bytes=60 << 20,
                           cpu_usage_usec=vm_cpu, cpus=1))


def test_cpu_share_and_memory_against_the_limit() -> None:
    # 2 s apart; the container used 0.5 s of CPU: 25 % of one CPU.
    found = stats.rows(_sample(1000, 1_000_000, 5_000_000), _sample(3000, 1_500_000, 6_000_000),
                       {("p", "c"): 64 << 20})
    container, vm = found
    assert container["cpu_percent"] == 25.0
    assert (container["memory_limit_bytes"], container["memory_percent"]) == (64 << 20, 25.0)
    assert vm["pod"] == "(vm)" and vm["cpu_percent"] == 50.0 and vm["memory_percent"] == 40.0
    unlimited = stats.rows(_sample(0, 0, 0), _sample(1000, 0, 0), {})
    assert unlimited[0]["memory_limit_bytes"] == 100 << 20  # the VM's memory
    table = stats._table(found)
    assert table[0][:5] == ["p", "c", "25.0%", "16.0MiB / 64.0MiB", "25.0%"]
