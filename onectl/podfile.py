"""Pod files: what `onectl pod create -f FILE` reads, in JSON or YAML.

Two shapes are understood:
- the CreatePodRequest shape: `{"id": "web", "name": "web", "containers": [{"id": "app",
  "image": "...", "command": [...], "args": [...], "env": ["K=V"] or {"K": "V"},
  "working_dir": "/"}]}`;
- a Kubernetes Pod manifest as kubectl users write it: `apiVersion: v1`, `kind: Pod`,
  `metadata.name` (the pod's id), `spec.containers[]` with `name` (the container's id), `image`,
  `command`, `args`, `env: [{name, value}]`, `workingDir` and `resources` (`limits.memory`,
  `limits.cpu`, `requests.cpu`, and mvirt-one's own `limits.pids`).
A field mvirt-one has no use for is named in a warning rather than dropped silently; a value it
cannot honour (an env `valueFrom`, a kind other than Pod) is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onectl import quantity
from onectl.errors import OnectlError
from oneproto import one_pb2

Warn = Callable[[str], None]
_FLAT_POD = {"id", "name", "containers"}
_FLAT_CONTAINER = {"id", "name", "image", "command", "args", "env", "working_dir", "workingDir",
                   "resources"}
_KUBE_POD = {"apiVersion", "kind", "metadata", "spec"}
_KUBE_CONTAINER = {"name", "image", "command", "args", "env", "workingDir", "resources"}


class PodFileError(OnectlError):
    pass


def parse_text(text: str, source: str) -> Any:
    """The document in `text`: JSON when `source` ends in .json or the text starts with `{`,
    YAML otherwise. A syntax error names the line and column."""
    if source.endswith(".json") or (text.lstrip().startswith("{")
                                    and not source.endswith((".yaml", ".yml"))):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise PodFileError(f"{source}: line {e.lineno}, column {e.colno}: {e.msg}") from None
    import yaml  # only for YAML files: the import costs ~20 ms

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        def at(mark: Any) -> str:
            return f"line {mark.line + 1}, column {mark.column + 1}"

        message = f"{source}: {at(e.problem_mark)}: {e.problem}" if e.problem_mark else \
            f"{source}: {e.problem}"
        if e.context and e.context_mark:
            message += f" ({e.context} at {at(e.context_mark)})"
        raise PodFileError(message) from None
    except yaml.YAMLError as e:
        raise PodFileError(f"{source}: not valid YAML: {e}") from None


def _text(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as YAML and JSON spell it, not Python's True
    if isinstance(value, str | int | float):
        return str(value)
    if value is None:
        return ""
    raise PodFileError(f"{where}: expected a string, not {type(value).__name__}")


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PodFileError(f"{where}: expected a mapping, not {type(value).__name__}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PodFileError(f"{where}: expected a list of strings (e.g. [sh, -c, ...])")
    return [_text(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _env(value: object, where: str) -> list[str]:
    """`["K=V"]`, `{"K": "V"}` or Kubernetes' `[{"name": "K", "value": "V"}]`."""
    if isinstance(value, dict):
        return [f"{k}={_text(v, f'{where}.{k}')}" for k, v in value.items()]
    out = []
    for i, item in enumerate(value if isinstance(value, list) else _strings(value, where)):
        if not isinstance(item, dict):
            out.append(_text(item, f"{where}[{i}]"))
            continue
        if "valueFrom" in item:
            raise PodFileError(f"{where}[{i}]: valueFrom is not supported: give a value")
        if "name" not in item:
            raise PodFileError(f"{where}[{i}]: an env entry needs a name")
        out.append(f"{_text(item['name'], f'{where}[{i}].name')}="
                   f"{_text(item.get('value'), f'{where}[{i}].value')}")
    return out


def _unused(doc: dict[str, Any], known: set[str], where: str, warn: Warn) -> None:
    extra = sorted(set(doc) - known)
    if extra:
        warn("ignored (mvirt-one does not use them): "
             + ", ".join(f"{where}{key}" for key in extra))


def _container(c: dict[str, Any], where: str, *, kube: bool, warn: Warn) -> one_pb2.ContainerSpec:
    _unused(c, _KUBE_CONTAINER if kube else _FLAT_CONTAINER, f"{where}.", warn)
    name = _text(c.get("name"), f"{where}.name")
    return one_pb2.ContainerSpec(
        id=name if kube else _text(c.get("id"), f"{where}.id"), name=name,
        image=_text(c.get("image"), f"{where}.image"),
        command=_strings(c.get("command"), f"{where}.command"),
        args=_strings(c.get("args"), f"{where}.args"),
        env=_env(c.get("env"), f"{where}.env"),
        working_dir=_text(c.get("working_dir") or c.get("workingDir"), f"{where}.workingDir"),
        resources=_resources(c.get("resources"), f"{where}.resources", warn))


def _resources(value: object, where: str, warn: Warn) -> one_pb2.Resources | None:
    """Kubernetes' resources: limits.memory, limits.cpu, requests.cpu (a memory request has
    no meaning inside one VM: warned), and limits.pids."""
    if value is None:
        return None
    doc = _mapping(value, where)
    _unused(doc, {"limits", "requests"}, f"{where}.", warn)
    limits = _mapping(doc.get("limits") or {}, f"{where}.limits")
    requests = _mapping(doc.get("requests") or {}, f"{where}.requests")
    _unused(limits, {"memory", "cpu", "pids"}, f"{where}.limits.", warn)
    _unused(requests, {"cpu"}, f"{where}.requests.", warn)
    try:
        return one_pb2.Resources(
            memory_limit_bytes=quantity.memory_bytes(limits["memory"])
            if "memory" in limits else 0,
            cpu_limit_millis=quantity.cpu_millis(limits["cpu"]) if "cpu" in limits else 0,
            cpu_request_millis=quantity.cpu_millis(requests["cpu"]) if "cpu" in requests
            else 0,
            pids_limit=int(limits["pids"]) if "pids" in limits else 0)
    except (quantity.QuantityError, ValueError, TypeError) as e:
        raise PodFileError(f"{where}: {e}") from None


def _containers(value: object, where: str, *, kube: bool,
                warn: Warn) -> list[one_pb2.ContainerSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PodFileError(f"{where}: expected a list of containers")
    return [_container(_mapping(c, f"{where}[{i}]"), f"{where}[{i}]", kube=kube, warn=warn)
            for i, c in enumerate(value)]


def _kube(doc: dict[str, Any], warn: Warn) -> one_pb2.CreatePodRequest:
    kind, api = doc.get("kind", "Pod"), doc.get("apiVersion", "v1")
    if kind != "Pod" or api != "v1":
        raise PodFileError(f"apiVersion {api} kind {kind}: a pod file holds one v1 Pod")
    _unused(doc, _KUBE_POD, "", warn)
    metadata = _mapping(doc.get("metadata") or {}, "metadata")
    _unused(metadata, {"name"}, "metadata.", warn)
    spec = _mapping(doc.get("spec") or {}, "spec")
    _unused(spec, {"containers"}, "spec.", warn)
    name = _text(metadata.get("name"), "metadata.name")
    return one_pb2.CreatePodRequest(
        id=name, name=name,
        containers=_containers(spec.get("containers"), "spec.containers", kube=True, warn=warn))


def request_of(doc: object, warn: Warn = lambda _: None) -> one_pb2.CreatePodRequest:
    """The CreatePodRequest a parsed pod file describes."""
    pod = _mapping(doc, "the pod file")
    if _KUBE_POD & set(pod):
        return _kube(pod, warn)
    _unused(pod, _FLAT_POD, "", warn)
    return one_pb2.CreatePodRequest(
        id=_text(pod.get("id"), "id"), name=_text(pod.get("name"), "name"),
        containers=_containers(pod.get("containers"), "containers", kube=False, warn=warn))


def load(path: Path, warn: Warn, stdin: Callable[[], str]) -> one_pb2.CreatePodRequest:
    """Read, parse and map a pod file; `-` reads `stdin()`."""
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = stdin() if source == "<stdin>" else path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PodFileError(f"{source}: cannot read: {getattr(e, 'strerror', None) or e}"
                           ) from None
    doc = parse_text(text, source)
    try:
        return request_of(doc, lambda message: warn(f"{source}: {message}"))
    except PodFileError as e:
        raise PodFileError(f"{source}: {e}") from None
