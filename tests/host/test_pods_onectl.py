"""`onectl pod create/start/get/stop/rm`, `pods`, `logs`, `exec` (with -it on a real pty) and YAML
pod files against the init in local mode with runc (tests/host/test_pods_local.py covers the
runtimes)."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, LocalInit
from tests.fixtures.paths import ROOT

pytestmark = [pytest.mark.host,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None,
                                 reason="needs root and runc")]
ONECTL = [sys.executable, "-m", "onectl"]


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "api.sock"
    runtime = str(shutil.which("runc"))
    init = LocalInit(tmp_path, f"unix:{sock}", [*SOURCE_INIT, "--runtime", runtime])
    try:
        init.wait_for(r"phase ready")
        yield f"unix:{sock}"
        assert init.proc.poll() is None, init.log()
    finally:
        assert init.stop() == 0, init.log()


def onectl(address: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ONECTL, "-a", address, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, input=stdin)


def test_pod_commands(address: str, image_registry: Registry, busybox_image: Pushed,
                      tmp_path: Path) -> None:
    image = f"{image_registry.address}/{busybox_image.name}"
    podfile = tmp_path / "pod.json"
    podfile.write_text(json.dumps({"id": "demo", "containers": [
        {"id": "app", "image": image, "command": ["sh", "-c"],
         "args": ["echo started $GREETING; exec busybox sleep 600"], "env": {"GREETING": "yo"}}]}))
    created = onectl(address, "pod", "create", "-f", str(podfile), "--start")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[1].split()[:2] == ["demo", "RUNNING"]
    listed = onectl(address, "pods", "-o", "json")
    assert json.loads(listed.stdout)[0]["id"] == "demo"
    deadline = time.monotonic() + 20
    while (out := onectl(address, "logs", "demo").stdout) != "started yo\n":
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    ran = onectl(address, "exec", "-i", "demo", "app", "--", "sh", "-c", "cat; exit 4",
                 stdin="piped\n")
    assert (ran.returncode, ran.stdout) == (4, "piped\n"), ran.stderr
    # -it on a real terminal: onectl puts it in raw mode and the shell in the container answers.
    pid, master = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execv(sys.executable, [*ONECTL, "-a", address, "exec", "-it", "demo", "app", "--",
                                  "sh"])
    os.write(master, b"echo $((6*7)); exit 3\r")
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    _, status = os.waitpid(pid, 0)
    assert b"42" in seen, seen
    assert os.waitstatus_to_exitcode(status) == 3, seen
    busy = onectl(address, "pod", "rm", "demo")
    assert busy.returncode == 1 and "FAILED_PRECONDITION" in busy.stderr
    stopped = onectl(address, "pod", "stop", "demo", "-t", "1")
    assert stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stderr
    assert onectl(address, "pod", "rm", "demo").returncode == 0
    missing = onectl(address, "pod", "get", "demo")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


KUBE_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: app
    image: {image}
    command: [sh, -c]
    args: ["echo $GREETING from $(pwd); exec busybox sleep 600"]
    env:
    - name: GREETING
      value: hi
    workingDir: /tmp
    ports:
    - containerPort: 8080
"""


def test_pod_from_a_kubernetes_yaml_file(address: str, image_registry: Registry,
                                         busybox_image: Pushed, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n spec: {}\n")
    refused = onectl(address, "pod", "create", "-f", str(bad))
    assert refused.returncode == 4
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert f"onectl: {bad}: line 5, column 2: " in refused.stderr
    assert json.loads(onectl(address, "pods", "-o", "json").stdout) == []  # nothing created

    podfile = tmp_path / "pod.yaml"
    podfile.write_text(KUBE_POD.format(image=f"{image_registry.address}/{busybox_image.name}"))
    created = onectl(address, "pod", "create", "-f", str(podfile), "--start", "-o", "json")
    assert created.returncode == 0, created.stderr
    assert created.stderr == (f"onectl: warning: {podfile}: ignored (mvirt-one does not use "
                              "them): spec.containers[0].ports\n")
    pod = json.loads(created.stdout)
    assert (pod["id"], pod["state"]) == ("web", "POD_STATE_RUNNING"), pod
    assert [c["id"] for c in pod["containers"]] == ["app"]
    deadline = time.monotonic() + 20
    while (out := onectl(address, "logs", "web").stdout) != "hi from /tmp\n":
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    assert onectl(address, "pod", "rm", "-f", "web").returncode == 0
