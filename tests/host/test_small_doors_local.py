"""The smaller doors of the isolation review, in local mode with runc, one init: pod names that
would break /etc/hosts, NUL bytes in a command or an environment, a pod id starting `exec-` left
behind by clean-up, a terminal resize past 16 bits, a DeletePod during a CreatePod that is still
pulling, and empty requests to the image RPCs (asserts, which the frozen -OO init lacks)."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, LocalInit
from tests.fixtures.pods import CALL, HOST_PODS, Env, ctr, pod_env, run_pod, wait_until
from tests.fixtures.rawh2 import raw_call
from tests.fixtures.runtimes import runc

pytestmark = HOST_PODS


@pytest.fixture
def env(tmp_path: Path, image_registry: Registry, busybox_image: Pushed) -> Iterator[Env]:
    with pod_env(tmp_path, runc(), f"{image_registry.address}/{busybox_image.name}") as e:
        yield e


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


def test_bad_names_and_nul_bytes_are_invalid_and_leave_nothing(env: Env) -> None:
    data = env.init.data_dir
    for name in ("web\n10.0.0.1 registry", "x" * 64, "-lead", "sp ace"):
        assert _code(lambda name=name: env.stub.CreatePod(one_pb2.CreatePodRequest(
            id="named", name=name, containers=[ctr("c", env.image, "true")]),
            timeout=CALL)) == grpc.StatusCode.INVALID_ARGUMENT, name
    assert _code(lambda: env.stub.CreatePod(one_pb2.CreatePodRequest(
        id="nul", containers=[ctr("c", env.image, "echo", "a\0b")]),
        timeout=CALL)) == grpc.StatusCode.INVALID_ARGUMENT
    run_pod(env, "ok", ctr("c", env.image, "sh", "-c", "exec busybox sleep 600"))
    for command, env_list in ((["echo", "a\0b"], []), (["true"], ["K=a\0b"])):
        assert _code(lambda command=command, env_list=env_list: list(env.stub.Exec(iter([
            one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id="ok", container_id="c",
                                                      command=command, env=env_list))]),
            timeout=CALL))
        ) == grpc.StatusCode.INVALID_ARGUMENT
    assert not list((data / "runtime").glob("*call-*")), "a runtime call's log was left"
    assert not list((data / "runtime").glob(".exec-*"))


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_pod_named_exec_is_cleaned_like_any_other(tmp_path: Path, image_registry: Registry,
                                                     busybox_image: Pushed) -> None:
    """Its runtime ids start `exec-` too: clean-up after a crash passed them over as exec work
    directories, and their containers lived on."""
    image = f"{image_registry.address}/{busybox_image.name}"
    argv = [*SOURCE_INIT, "--runtime", runc()]
    seconds = str(600_000 + secrets.randbelow(100_000))  # this run's container, no other
    first = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}", argv)
    try:
        with first.client() as stub:
            stub.CreatePod(one_pb2.CreatePodRequest(id="exec-x", containers=[
                ctr("c", image, "busybox", "sleep", seconds)]), timeout=CALL)
            stub.StartPod(one_pb2.StartPodRequest(id="exec-x"), timeout=CALL)
            wait_until(lambda: _processes_with(f"sleep {seconds}"), 30, "the container")
    finally:
        first.proc.kill()  # a crash: nothing is stopped
        first.proc.wait()
    assert _processes_with(f"sleep {seconds}"), "the container went with the init"
    second = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}", argv)
    try:
        second.wait_for(r"phase ready")
        try:
            wait_until(lambda: not _processes_with(f"sleep {seconds}"), 30,
                       "the next init to remove the container left behind")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{second.log()}") from None
        assert not (tmp_path / "data" / "runtime" / "exec-x_0").exists()
    finally:
        for pid in _processes_with(f"sleep {seconds}"):  # a failed run leaves nothing behind
            os.kill(pid, signal.SIGKILL)
        assert second.stop() == 0, second.log()


def test_a_resize_past_16_bits_is_refused_and_the_session_goes_on(env: Env) -> None:
    run_pod(env, "tty", ctr("c", env.image, "sh", "-c", "exec busybox sleep 600"))
    requests = iter([
        one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id="tty", container_id="c",
                                                  command=["sh"], tty=True)),
        one_pb2.ExecInput(resize=one_pb2.ExecResize(width=70000, height=24)),
        one_pb2.ExecInput(stdin=b"echo still-$((40+2)); exit 7\n"),
    ])
    out = b""
    code = None
    for message in env.stub.Exec(requests, timeout=CALL):
        out += message.stdout
        if message.HasField("exit_code"):
            code = message.exit_code
    assert b"still-42" in out and code == 7, out
    assert "resize to 70000x24 refused" in env.init.log()


def test_delete_during_a_pulling_create_cancels_it(env: Env, image_proxy: Proxy,
                                                   busybox_image: Pushed) -> None:
    image_proxy.trickle = 5.0  # a byte every 5 s: the pull would take hours
    slow = f"{image_proxy.address}/{busybox_image.name}"
    outcome: list[object] = []

    def create() -> None:
        try:
            outcome.append(env.stub.CreatePod(one_pb2.CreatePodRequest(
                id="pulling", containers=[ctr("c", slow, "true")]), timeout=CALL))
        except grpc.RpcError as e:
            outcome.append(e.code())

    creator = threading.Thread(target=create)
    creator.start()
    wait_until(lambda: image_proxy.requests("GET", "blobs"), 30, "the pull to reach a blob")
    started = time.monotonic()
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="pulling", force=True), timeout=CALL)
    took = time.monotonic() - started
    creator.join(CALL)
    assert took < 20, f"DeletePod waited {took:.0f} s for the pull"
    assert outcome, "CreatePod never answered"
    assert _code(lambda: env.stub.GetPod(one_pb2.GetPodRequest(id="pulling"),
                                         timeout=CALL)) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("method", ["PullImage", "RemoveImage"])
def test_an_empty_image_request_is_invalid_not_internal(env: Env, method: str) -> None:
    headers = raw_call(env.init.listen.removeprefix("unix:"), method, None, timeout=CALL)
    assert headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0]), headers

