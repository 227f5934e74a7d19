"""Manifest documents: types, schema 1 refusal, platform choice, image config."""

from __future__ import annotations

import json

import pytest

from init.services.image import imageconfig
from init.services.image import manifest as mf
from init.services.image.errors import UnsupportedImage

D = ["sha256:" + c * 64 for c in "abcdef"]


def index(*platforms: dict[str, str]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": [
        {"mediaType": mf.OCI_MANIFEST, "digest": D[i], "size": 10, "platform": p}
        for i, p in enumerate(platforms)]}).encode()


def test_accept_header_names_every_type() -> None:
    for t in (mf.OCI_INDEX, mf.OCI_MANIFEST, mf.DOCKER_LIST, mf.DOCKER_MANIFEST):
        assert t in mf.ACCEPT


def test_media_type() -> None:
    assert mf.media_type_of(index(), "", "x") == mf.OCI_INDEX
    body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    assert mf.media_type_of(body, "", "x") == mf.OCI_MANIFEST  # by shape
    assert mf.media_type_of(body, mf.DOCKER_MANIFEST + "; charset=utf-8", "x") == \
        mf.DOCKER_MANIFEST
    with pytest.raises(UnsupportedImage, match="schema 1"):
        mf.media_type_of(b'{"schemaVersion": 1, "fsLayers": []}', "", "x")
    with pytest.raises(UnsupportedImage, match="not JSON"):
        mf.media_type_of(b"<html>", "", "x")


def test_choose_platform() -> None:
    body = index({"os": "linux", "architecture": "arm64", "variant": "v8"},
                 {"os": "windows", "architecture": "amd64"},
                 {"os": "linux", "architecture": "amd64"},
                 {"os": "linux", "architecture": "arm", "variant": "v7"})
    assert mf.choose_platform(body, "x", ("amd64", None)).digest == D[2]
    assert mf.choose_platform(body, "x", ("arm64", None)).digest == D[0]
    assert mf.choose_platform(body, "x", ("arm", "v7")).digest == D[3]
    with pytest.raises(UnsupportedImage, match=r"linux/arm/v6 \(available: linux/arm64/v8, "
                                               r"windows/amd64"):
        mf.choose_platform(body, "x", ("arm", "v6"))


def test_machine_platform() -> None:
    import platform

    if platform.machine() == "x86_64":
        assert mf.machine_platform() == ("amd64", None)


def test_parse_manifest_checks_descriptors() -> None:
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D[1],
             "size": 3}
    doc = {"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": D[0], "size": 2}, "layers": [layer]}
    m = mf.parse_manifest(json.dumps(doc).encode(), mf.OCI_MANIFEST, "x")
    assert m.layers[0].digest == D[1] and m.config.size == 2
    bad = {**doc, "layers": [{**layer, "mediaType": "application/x-helm"}]}
    with pytest.raises(UnsupportedImage, match="unsupported media type"):
        mf.parse_manifest(json.dumps(bad).encode(), mf.OCI_MANIFEST, "x")
    bad = {**doc, "layers": [{**layer, "digest": "sha256:zz"}]}
    with pytest.raises(UnsupportedImage):
        mf.parse_manifest(json.dumps(bad).encode(), mf.OCI_MANIFEST, "x")


def test_image_config() -> None:
    body = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                       "config": {"Entrypoint": ["/init"], "Cmd": ["-v"], "Env": ["A=1"],
                                  "WorkingDir": "/w", "User": "nobody",
                                  "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                                  "Labels": {"k": "v"}, "StopSignal": "SIGINT"},
                       "rootfs": {"type": "layers", "diff_ids": [D[0]]}}).encode()
    c = imageconfig.parse(body, "x")
    assert c.entrypoint == ("/init",) and c.cmd == ("-v",) and c.env == ("A=1",)
    assert (c.working_dir, c.user, c.stop_signal) == ("/w", "nobody", "SIGINT")
    assert c.exposed_ports == ("53/udp", "80/tcp") and c.labels == {"k": "v"}
    assert imageconfig.ImageConfig.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(UnsupportedImage, match="diff_ids"):
        imageconfig.parse(b'{"config": {}}', "x")
