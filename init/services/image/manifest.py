"""Manifests, indexes and the choice of a platform: the JSON documents of the distribution API.

Both families are understood: OCI (index, manifest) and Docker (manifest list, schema 2).
Schema 1 is refused with a clear message: registries convert to it only when a client asks badly
(registry 2.8 does so for a Docker manifest requested without an Accept header).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from init.services.image.errors import InvalidReference, UnsupportedImage
from init.services.image.reference import check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
# Every type we can use, in the Accept header of every manifest request: registry 2.8 answers an
# OCI manifest or an index asked for without its type with 404, and converts Docker's to schema 1.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json")
MAX_MANIFEST = 4 << 20  # distribution's own limit is 4 MiB; nothing bigger is read into memory
MAX_CONFIG = 8 << 20

# platform.machine() → the OCI architecture (and variant) names.
_ARCHES = {"x86_64": ("amd64", None), "amd64": ("amd64", None), "aarch64": ("arm64", None),
           "arm64": ("arm64", None), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
           "i686": ("386", None), "i386": ("386", None), "ppc64le": ("ppc64le", None),
           "s390x": ("s390x", None), "riscv64": ("riscv64", None)}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Any, what: str) -> Descriptor:
        if not isinstance(d, dict):
            raise UnsupportedImage(f"{what}: descriptor is not an object")
        digest, size = d.get("digest"), d.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or size < 0:
            raise UnsupportedImage(f"{what}: descriptor without a valid digest and size")
        try:
            check_digest(digest, what)
        except InvalidReference as e:
            raise UnsupportedImage(str(e)) from None
        platform_ = d.get("platform")
        urls = d.get("urls") or ()
        return cls(str(d.get("mediaType", "")), digest, size,
                   platform_ if isinstance(platform_, dict) else None,
                   tuple(u for u in urls if isinstance(u, str)))


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def load_object(body: bytes, what: str) -> dict[str, Any]:
    """A JSON object document (manifest, index, config); UnsupportedImage otherwise."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise UnsupportedImage(f"{what}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise UnsupportedImage(f"{what}: not a JSON object")
    return doc


def media_type_of(body: bytes, header_type: str, what: str) -> str:
    """The document's type: its own mediaType field, else the Content-Type, else by shape."""
    doc = load_object(body, what)
    mt = doc.get("mediaType") or header_type.split(";")[0].strip()
    if doc.get("schemaVersion") == 1 or mt in DOCKER_SCHEMA1:
        raise UnsupportedImage(f"{what}: Docker schema 1 manifests are not supported (push the "
                               "image again with a current client)")
    if mt in INDEX_TYPES or mt in MANIFEST_TYPES:
        return str(mt)
    # OCI allows leaving mediaType out; the shape tells an index from a manifest.
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise UnsupportedImage(f"{what}: unsupported manifest type {mt!r}")


def parse_manifest(body: bytes, media_type: str, what: str) -> Manifest:
    doc = load_object(body, what)
    config = Descriptor.from_json(doc.get("config"), f"{what} config")
    layers_json = doc.get("layers")
    if not isinstance(layers_json, list):
        raise UnsupportedImage(f"{what}: no layer list")
    layers = tuple(Descriptor.from_json(d, f"{what} layer {i}") for i, d in enumerate(layers_json))
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise UnsupportedImage(f"{what}: layer {layer.digest} has unsupported media type "
                                   f"{layer.media_type!r}")
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise UnsupportedImage(f"{what}: not a container image (config type "
                               f"{config.media_type!r})")
    return Manifest(media_type, config, layers)


def machine_platform() -> tuple[str, str | None]:
    """(architecture, variant) of this machine in OCI terms: the images a guest can run."""
    machine = platform.machine()
    return _ARCHES.get(machine, (machine, None))


def choose_platform(body: bytes, what: str,
                    want: tuple[str, str | None] | None = None) -> Descriptor:
    """The index entry for linux on this machine's architecture (variant if one is wanted)."""
    arch, variant = want or machine_platform()
    doc = load_object(body, what)
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise UnsupportedImage(f"{what}: index without a manifest list")
    seen: list[str] = []
    candidates: list[Descriptor] = []
    for i, entry in enumerate(entries):
        d = Descriptor.from_json(entry, f"{what} entry {i}")
        p = d.platform or {}
        seen.append("/".join(str(p.get(k)) for k in ("os", "architecture", "variant")
                             if p.get(k)))
        if p.get("os") == "linux" and p.get("architecture") == arch:
            candidates.append(d)
    for d in candidates:
        if variant is None or (d.platform or {}).get("variant") in (variant, None):
            if d.media_type in INDEX_TYPES:
                raise UnsupportedImage(f"{what}: nested indexes are not supported")
            return d
    raise UnsupportedImage(f"{what}: no image for linux/{arch}{'/' + variant if variant else ''}"
                           f" (available: {', '.join(s for s in seen if s) or 'none'})")
