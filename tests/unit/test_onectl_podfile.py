"""Pod files in JSON and YAML, in the CreatePodRequest shape and as Kubernetes v1 Pods: what they
map to, what is warned about, and errors that say where the file is wrong."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from onectl import podfile
from onectl.podfile import PodFileError
from oneproto import one_pb2

KUBE_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: 10.0.2.100:5000/busybox:latest
    command: [sh, -c]
    args:
    - echo $GREETING; exec sleep 600
    env:
    - name: GREETING
      value: hello
    - name: DEBUG
      value: true
    workingDir: /tmp
    ports:
    - containerPort: 80
"""

FLAT_YAML = """\
id: demo
containers:
  - id: app
    image: busybox
    command: [sleep, 600]
    env: {A: "1", B: on}
    working_dir: /
"""


def _load(tmp_path: Path, name: str, text: str) -> tuple[one_pb2.CreatePodRequest, list[str]]:
    path = tmp_path / name
    path.write_text(text)
    warnings: list[str] = []
    return podfile.load(path, warnings.append, lambda: ""), warnings


def test_kubernetes_pod_manifest(tmp_path: Path) -> None:
    request, warnings = _load(tmp_path, "pod.yaml", KUBE_POD)
    assert request == one_pb2.CreatePodRequest(id="web", name="web", containers=[
        one_pb2.ContainerSpec(id="app", name="app", image="10.0.2.100:5000/busybox:latest",
                              command=["sh", "-c"], args=["echo $GREETING; exec sleep 600"],
                              env=["GREETING=hello", "DEBUG=true"], working_dir="/tmp")])
    path = tmp_path / "pod.yaml"
    assert warnings == [
        f"{path}: ignored (mvirt-one does not use them): metadata.labels",
        f"{path}: ignored (mvirt-one does not use them): spec.restartPolicy",
        f"{path}: ignored (mvirt-one does not use them): spec.containers[0].ports"]


def test_flat_shape_in_yaml_and_json_give_the_same_request(tmp_path: Path) -> None:
    from_yaml, warnings = _load(tmp_path, "pod.yml", FLAT_YAML)
    assert warnings == []
    from_json, _ = _load(tmp_path, "pod.json", '{"id": "demo", "containers": [{"id": "app", '
                         '"image": "busybox", "command": ["sleep", "600"], '
                         '"env": ["A=1", "B=true"], "working_dir": "/"}]}')
    assert from_yaml == from_json
    assert list(from_yaml.containers[0].command) == ["sleep", "600"]  # YAML's 600 is an int


def test_stdin_and_files_without_a_known_suffix(tmp_path: Path) -> None:
    warnings: list[str] = []
    from_stdin = podfile.load(Path("-"), warnings.append, io.StringIO(FLAT_YAML).read)
    assert from_stdin.id == "demo"
    json_text = '{"id": "j", "containers": []}'
    assert podfile.load(Path("-"), warnings.append, lambda: json_text).id == "j"
    request, _ = _load(tmp_path, "pod.txt", FLAT_YAML)
    assert request.id == "demo"


@pytest.mark.parametrize("name,text,message", [
    ("pod.yaml", "id: demo\ncontainers:\n  - id: app\n    image: [busybox\n",
     r"pod\.yaml: line 5, column 1: expected ',' or '\]', but got '<stream end>' "
     r"\(while parsing a flow sequence at line 4, column 12\)"),
    ("pod.yaml", "id: demo\n  containers: []\n", r"pod\.yaml: line 2, column 13: "
     r"mapping values are not allowed here"),
    ("pod.yaml", "id: a\n---\nid: b\n", r"pod\.yaml: line 2, column 1: .*single document"),
    ("pod.json", '{"id": "demo",\n "containers": [}\n', r"pod\.json: line 2, column 17: "),
    ("pod.yaml", "- just\n- a list\n", r"pod\.yaml: the pod file: expected a mapping, not list"),
    ("pod.yaml", "id: x\ncontainers:\n  - id: a\n    command: sleep 10\n",
     r"pod\.yaml: containers\[0\]\.command: expected a list of strings"),
    ("pod.yaml", "kind: Deployment\napiVersion: apps/v1\n",
     r"apiVersion apps/v1 kind Deployment: a pod file holds one v1 Pod"),
    ("pod.yaml", "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n"
     "    env:\n    - name: X\n      valueFrom: {fieldRef: {fieldPath: status.podIP}}\n",
     r"spec\.containers\[0\]\.env\[0\]: valueFrom is not supported"),
    ("pod.yaml", "id: x\ncontainers:\n  - id: a\n    image: {name: busybox}\n",
     r"containers\[0\]\.image: expected a string, not dict"),
])
def test_bad_files_say_where(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(PodFileError, match=message):
        _load(tmp_path, name, text)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PodFileError, match=r"absent\.yaml: cannot read: No such file"):
        podfile.load(tmp_path / "absent.yaml", print, lambda: "")
