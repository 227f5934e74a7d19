"""Pods end to end in local mode: the init (`python -m init`) with a real OCI runtime, pulling from
the loopback registry, called by a grpcio client. Root only (the runtime needs it).

Runtimes: bookworm's runc as is; the static crun the build ships, wrapped as ENVIRONMENT.md says
for this host's hybrid cgroups (private mount namespace + its own cgroup2 mount, no cgroup manager).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import FROZEN, SOURCE_INIT, LocalInit
from tests.fixtures.pods import CALL, HOST_PODS, Env, ctr, run_pod, wait_state, wait_until
from tests.fixtures.runtimes import crun_hybrid, runc

pytestmark = HOST_PODS


@pytest.fixture
def env(pods_both_runtimes: Env) -> Env:
    return pods_both_runtimes


def logs(env: Env, pod_id: str, **kw: object) -> tuple[bytes, bytes]:
    out, err = b"", b""
    for m in env.stub.Logs(one_pb2.LogsRequest(pod_id=pod_id, **kw), timeout=CALL):
        if m.is_stderr:
            err += m.data
        else:
            out += m.data
    return out, err


def test_lifecycle_logs_and_exit_code(env: Env) -> None:
    pod = run_pod(env, "hello", ctr("main", env.image, "sh", "-c",
                                    "echo out; echo err >&2; hostname; exit 3"))
    assert pod.state in (one_pb2.POD_STATE_RUNNING, one_pb2.POD_STATE_STOPPED)
    pod = wait_state(env, "hello", one_pb2.POD_STATE_STOPPED)
    assert pod.containers[0].exit_code == 3
    assert pod.containers[0].state == one_pb2.CONTAINER_STATE_STOPPED
    assert logs(env, "hello") == (b"out\nhello\n", b"err\n")
    with pytest.raises(grpc.RpcError) as info:
        env.stub.StartPod(one_pb2.StartPodRequest(id="hello"), timeout=CALL)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="hello"), timeout=CALL)
    with pytest.raises(grpc.RpcError) as info:
        env.stub.GetPod(one_pb2.GetPodRequest(id="hello"), timeout=CALL)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_two_containers_share_the_network(env: Env) -> None:
    port = 20000 + os.getpid() % 20000
    server = ctr("server", env.image, "sh", "-c",
                 f"echo served-$HOSTNAME > /tmp/index.html; "
                 f"exec busybox httpd -f -p 127.0.0.1:{port} -h /tmp")
    # Once the server answers, its /tmp/index.html exists in its own rootfs; the client's rootfs
    # (same image, its own overlay) must not have it: exit 2 if it does.
    client = ctr("client", env.image, "sh", "-c",
                 f"for i in $(busybox seq 100); do busybox wget -q -O - "
                 f"http://127.0.0.1:{port}/index.html && "
                 f"{{ if [ -e /tmp/index.html ]; then exit 2; fi; exit 0; }}; "
                 f"busybox sleep 0.1; done; exit 1")
    pod = run_pod(env, "web", server, client)
    assert pod.state == one_pb2.POD_STATE_RUNNING
    deadline = time.monotonic() + 30
    while True:
        pod = env.stub.GetPod(one_pb2.GetPodRequest(id="web"), timeout=CALL)
        if pod.containers[1].state == one_pb2.CONTAINER_STATE_STOPPED:
            break
        assert time.monotonic() < deadline, pod
        time.sleep(0.1)
    assert pod.containers[1].exit_code == 0, logs(env, "web", container_id="client")
    assert pod.state == one_pb2.POD_STATE_RUNNING  # the server still runs
    assert logs(env, "web", container_id="client")[0] == b"served-web\n"
    assert env.stub.Health(one_pb2.Empty(), timeout=CALL).running_containers == 1
    # A second container of the same image does not see the first one's writes (the client's
    # exit code 0 above), and neither does the image: a new pod of it finds no index.html.
    fresh = run_pod(env, "fresh", ctr("look", env.image, "sh", "-c",
                                      "if [ -e /tmp/index.html ]; then exit 2; fi"))
    assert fresh.state in (one_pb2.POD_STATE_RUNNING, one_pb2.POD_STATE_STOPPED)
    fresh = wait_state(env, "fresh", one_pb2.POD_STATE_STOPPED)
    assert fresh.containers[0].exit_code == 0, "a new container saw another one's write"
    stopped = env.stub.StopPod(one_pb2.StopPodRequest(id="web", timeout_seconds=5), timeout=CALL)
    assert stopped.state == one_pb2.POD_STATE_STOPPED


def test_ten_thousand_lines_tail_and_follow(env: Env) -> None:
    script = "i=0; while [ $i -lt 10000 ]; do echo line-$i; i=$((i+1)); done; echo bye >&2"
    # Follow from the start: the stream ends when the container exits, with every line.
    env.stub.CreatePod(one_pb2.CreatePodRequest(
        id="lines", containers=[ctr("c", env.image, "sh", "-c", script)]), timeout=CALL)
    follow = env.stub.Logs(one_pb2.LogsRequest(pod_id="lines", follow=True), timeout=CALL)
    env.stub.StartPod(one_pb2.StartPodRequest(id="lines"), timeout=CALL)
    out, err = b"", b""
    for m in follow:
        if m.is_stderr:
            err += m.data
        else:
            out += m.data
    expected = "".join(f"line-{i}\n" for i in range(10000)).encode()
    assert out == expected and err == b"bye\n"
    wait_state(env, "lines", one_pb2.POD_STATE_STOPPED)
    assert logs(env, "lines")[0] == expected
    assert logs(env, "lines", tail_lines=3, container_id="c")[0] == \
        b"line-9997\nline-9998\nline-9999\n"


def _exec(env: Env, pod: str, ctr_id: str, command: list[str], *, tty: bool = False,
          stdin: bytes = b"", resize: tuple[int, int] | None = None
          ) -> tuple[bytes, bytes, int]:
    def inputs() -> Iterator[one_pb2.ExecInput]:
        yield one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id=pod, container_id=ctr_id,
                                                        command=command, tty=tty))
        if resize:
            yield one_pb2.ExecInput(resize=one_pb2.ExecResize(width=resize[0],
                                                              height=resize[1]))
        if stdin:
            yield one_pb2.ExecInput(stdin=stdin)

    out, err, code = b"", b"", -1
    for m in env.stub.Exec(inputs(), timeout=CALL):
        kind = m.WhichOneof("output")
        if kind == "stdout":
            out += m.stdout
        elif kind == "stderr":
            err += m.stderr
        else:
            code = m.exit_code
    return out, err, code


def test_exec_with_and_without_tty(env: Env) -> None:
    run_pod(env, "box", ctr("main", env.image, "sh", "-c", "exec busybox sleep 600"))
    out, err, code = _exec(env, "box", "main", ["sh", "-c", "cat; echo oops >&2; exit 7"],
                           stdin=b"from stdin\n")
    assert (out, err, code) == (b"from stdin\n", b"oops\n", 7)
    big = os.urandom(3 << 20)  # more than any pipe holds: stdin and stdout both back up
    out, _, code = _exec(env, "box", "main", ["cat"], stdin=big)
    assert code == 0 and out == big
    out, _, code = _exec(env, "box", "main", ["sh"], tty=True, resize=(100, 30),
                         stdin=b"busybox stty size; busybox tty; exit 5\n")
    text = out.decode(errors="replace")
    assert code == 5, text
    assert "30 100" in text and "/dev/pts/" in text
    with pytest.raises(grpc.RpcError) as info:
        _exec(env, "box", "main", ["/no/such/binary"])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no/such/binary" in info.value.details()


def _has_written(env: Env, pod_id: str, cid: str, text: bytes) -> Callable[[], bool]:
    return lambda: text in logs(env, pod_id, container_id=cid)[0]


def test_stop_kills_a_container_that_ignores_sigterm(env: Env) -> None:
    run_pod(env, "stubborn",
            ctr("deaf", env.image, "sh", "-c",
                "trap '' TERM; echo trapped; while :; do busybox sleep 1; done"),
            ctr("polite", env.image, "sh", "-c",
                "trap 'exit 0' TERM; echo trapped; while :; do busybox sleep 0.1; done"))
    # Each shell says when its trap is installed; stop only once both have.
    for cid in ("deaf", "polite"):
        wait_until(_has_written(env, "stubborn", cid, b"trapped\n"), 30,
                   f"{cid} to install its TERM trap")
    started = time.monotonic()
    pod = env.stub.StopPod(one_pb2.StopPodRequest(id="stubborn", timeout_seconds=2),
                           timeout=CALL)
    took = time.monotonic() - started
    assert pod.state == one_pb2.POD_STATE_STOPPED
    # The deaf one gets its whole 2 s grace (load only lengthens it), then SIGKILL (code 137
    # below). The upper bound only says the stop did not wait for the deaf shell on its own,
    # which never ends: generous, as runtime calls take seconds on a loaded 2-core host.
    assert 1.8 < took < 2 + 30, took
    codes = {c.id: c.exit_code for c in pod.containers}
    assert codes == {"deaf": 128 + 9, "polite": 0}, pod


def test_delete_needs_force_while_running(env: Env) -> None:
    run_pod(env, "busy", ctr("main", env.image, "sh", "-c", "exec busybox sleep 600"))
    with pytest.raises(grpc.RpcError) as info:
        env.stub.DeletePod(one_pb2.DeletePodRequest(id="busy"), timeout=CALL)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="busy", force=True), timeout=CALL)
    assert list(env.stub.ListPods(one_pb2.Empty(), timeout=CALL).pods) == []
    assert env.stub.Health(one_pb2.Empty(), timeout=CALL).running_containers == 0


def test_bad_requests(env: Env) -> None:
    def code(req: one_pb2.CreatePodRequest) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            env.stub.CreatePod(req, timeout=CALL)
        return info.value.code()  # type: ignore[no-any-return]

    good = ctr("c", env.image, "true")
    assert code(one_pb2.CreatePodRequest(id="../evil", containers=[good])) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(one_pb2.CreatePodRequest(id="p", containers=[ctr("c", "Not A/Ref")])) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(one_pb2.CreatePodRequest(id="p", containers=[good, good])) == \
        grpc.StatusCode.INVALID_ARGUMENT
    env.stub.CreatePod(one_pb2.CreatePodRequest(id="p", containers=[good]), timeout=CALL)
    assert code(one_pb2.CreatePodRequest(id="p", containers=[good])) == \
        grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as info:  # the pod's container uses the image
        env.stub.RemoveImage(one_pb2.RemoveImageRequest(reference=env.image), timeout=CALL)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as info:
        env.stub.StopPod(one_pb2.StopPodRequest(id="nope"), timeout=CALL)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_image_and_missing_binary_fail_readably(env: Env) -> None:
    registry = env.image.split("/")[0]
    pod = env.stub.CreatePod(one_pb2.CreatePodRequest(
        id="noimage", containers=[ctr("c", f"{registry}/no-such-image:1", "true")]),
        timeout=CALL)
    assert pod.state == one_pb2.POD_STATE_FAILED
    assert "no-such-image" in pod.error_message, pod
    assert pod.containers[0].state == one_pb2.CONTAINER_STATE_FAILED
    pod = env.stub.CreatePod(one_pb2.CreatePodRequest(
        id="nobinary", containers=[ctr("c", env.image, "/bin/not-there")]), timeout=CALL)
    if pod.state != one_pb2.POD_STATE_FAILED:  # some runtimes find out only at start
        pod = env.stub.StartPod(one_pb2.StartPodRequest(id="nobinary"), timeout=CALL)
    assert pod.state == one_pb2.POD_STATE_FAILED, pod
    assert "not-there" in pod.error_message, pod
    assert env.stub.Health(one_pb2.Empty(), timeout=CALL).healthy


def test_the_frozen_init_runs_a_pod(tmp_path: Path, image_registry: Registry,
                                    busybox_image: Pushed) -> None:
    """The PyInstaller tree (what the VM runs): every pod module made it into the freeze."""
    if not FROZEN.exists():
        pytest.fail(f"{FROZEN} missing: run `.venv/bin/doit init` (`make test` builds it)")
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [str(FROZEN), "--runtime", crun_hybrid(tmp_path)])
    try:
        with init.client() as stub:
            env = Env(init, stub, f"{image_registry.address}/{busybox_image.name}")
            run_pod(env, "f", ctr("c", env.image, "sh", "-c", "echo hi; exec busybox sleep 60"))
            assert _exec(env, "f", "c", ["sh", "-c", "exit 4"]) == (b"", b"", 4)
            assert _exec(env, "f", "c", ["sh"], tty=True, stdin=b"exit 2\n")[2] == 2
            stopped = stub.StopPod(one_pb2.StopPodRequest(id="f", timeout_seconds=1),
                                   timeout=CALL)
            assert stopped.state == one_pb2.POD_STATE_STOPPED
            assert logs(env, "f") == (b"hi\n", b"")
            stub.DeletePod(one_pb2.DeletePodRequest(id="f"), timeout=CALL)
    finally:
        assert init.stop() == 0, init.log()
    assert not re.search(r"Traceback|internal error", init.log()), init.log()


def test_shutdown_stops_running_pods(tmp_path: Path, image_registry: Registry,
                                     busybox_image: Pushed) -> None:
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [*SOURCE_INIT, "--runtime", runc()])
    try:
        with init.client() as stub:
            env = Env(init, stub, f"{image_registry.address}/{busybox_image.name}")
            run_pod(env, "s", ctr("c", env.image, "busybox", "sleep", "600"))
            pid = int((tmp_path / "data/pods/s/containers/c/pid").read_text())
            stub.Shutdown(one_pb2.ShutdownRequest(timeout_seconds=1), timeout=CALL)
        assert init.proc.wait(timeout=30) == 0, init.log()
    finally:
        init.stop()
    with pytest.raises(ProcessLookupError):  # killed after the 1 s grace, and reaped
        os.kill(pid, 0)
    assert re.search(r"container s_0 exited \(code 137\)", init.log()), init.log()
    # Nothing left mounted on the host; the logs stay.
    assert str(tmp_path) not in Path("/proc/self/mounts").read_text()
    assert (tmp_path / "data/pods/s/containers/c/stdout.log").exists()
