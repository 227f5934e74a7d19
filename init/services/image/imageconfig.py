"""The image configuration (the config blob), reduced to what the pod service runs them with."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from init.services.image.errors import UnsupportedImage
from init.services.image.manifest import load_object


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # KEY=VALUE
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    architecture: str = ""
    os: str = ""
    created: str = ""  # RFC 3339, as the image says
    diff_ids: tuple[str, ...] = ()  # digests of the uncompressed layers, in order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageConfig:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**values)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # Docker accepts a shell string for Cmd/Entrypoint in places
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def parse(body: bytes, what: str) -> ImageConfig:
    doc = load_object(body, f"{what}: image config")
    c = doc.get("config") or {}
    if not isinstance(c, dict):
        c = {}
    rootfs = doc.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise UnsupportedImage(f"{what}: image config has no rootfs.diff_ids")
    labels = c.get("Labels") or {}
    ports = c.get("ExposedPorts") or {}
    return ImageConfig(
        entrypoint=_strings(c.get("Entrypoint")),
        cmd=_strings(c.get("Cmd")),
        env=_strings(c.get("Env")),
        working_dir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""),
        exposed_ports=tuple(sorted(str(p) for p in ports)) if isinstance(ports, dict) else (),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        stop_signal=str(c.get("StopSignal") or ""),
        architecture=str(doc.get("architecture") or ""),
        os=str(doc.get("os") or ""),
        created=str(doc.get("created") or ""),
        diff_ids=tuple(diff_ids),
    )
