"""Pulling real images from a real registry (docker-registry on 127.0.0.1) into the store."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from init.services.image import ImageNotFound, ImageService
from init.services.image.errors import AuthenticationError, ImageInUse
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry

pytestmark = pytest.mark.host


def pull(service: ImageService, ref: str, events: list[object] | None = None):  # type: ignore[no-untyped-def]
    return asyncio.run(service.pull(ref, events.append if events is not None else None))


def test_busybox_oci(image_service: ImageService, image_registry: Registry,
                     busybox_image: Pushed) -> None:
    events: list[object] = []
    ref = f"{image_registry.address}/{busybox_image.name}"
    image = pull(image_service, ref, events)
    assert image.digest == busybox_image.digest
    assert image.references == (ref,)
    root = image.rootfs
    assert os.access(root / "bin" / "busybox", os.X_OK)
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    c = image.config
    assert c.entrypoint == ("/bin/sh",)
    assert c.cmd == ("-c", "echo hello")
    assert c.env == ("PATH=/bin", "GREETING=hi there")
    assert (c.working_dir, c.user) == ("/tmp", "1000:1000")
    assert c.exposed_ports == ("8080/tcp",)
    assert c.labels["org.example.role"] == "fixture"
    statuses = [getattr(e, "status", None) for e in events]
    assert statuses[0] == "resolving" and statuses[-1] == "done"
    assert "downloading" in statuses and "extracting" in statuses
    # get() and list() answer from the store alone.
    assert image_service.get(ref) == image
    assert image_service.get(busybox_image.digest) == image
    assert [i.digest for i in image_service.list()] == [image.digest]


def test_docker_v2s2(image_service: ImageService, image_registry: Registry,
                     busybox_v2s2_image: Pushed) -> None:
    image = pull(image_service, f"{image_registry.address}/{busybox_v2s2_image.name}")
    assert image.digest == busybox_v2s2_image.digest
    assert (image.rootfs / "etc" / "marker").read_text() == "busybox\n"


def test_zstd_layer(image_service: ImageService, image_registry: Registry,
                    zstd_image: Pushed) -> None:
    image = pull(image_service, f"{image_registry.address}/{zstd_image.name}")
    meta = image_service.store.read_meta(image.digest)
    assert meta is not None
    assert meta["layers"][0]["media_type"].endswith("+zstd")
    assert os.access(image.rootfs / "bin" / "busybox", os.X_OK)


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_multiarch_picks_this_machine(image_service: ImageService, image_registry: Registry,
                                      multiarch_images: dict[str, Pushed], kind: str) -> None:
    index = multiarch_images[kind]
    image = pull(image_service, f"{image_registry.address}/{index.name}")
    assert (image.rootfs / "etc" / "marker").read_text() == "amd64\n"
    assert image.config.architecture == "amd64"
    assert image.digest != index.digest
    # The index digest finds the image too, and a pull by it transfers nothing.
    by_digest = f"{image_registry.address}/multi@{index.digest}"
    assert pull(image_service, by_digest).digest == image.digest


def test_layered_whiteouts_opaque_links(image_service: ImageService, image_registry: Registry,
                                        layered_image: Pushed, tmp_path: Path) -> None:
    image = pull(image_service, f"{image_registry.address}/{layered_image.name}")
    data = image.rootfs / "data"
    assert (data / "keep").read_text() == "upper\n"
    assert not (data / "gone").exists()
    assert not (data / "dir").exists()
    assert (data / "new").read_text() == "new\n"
    assert (data / "new").stat().st_ino == (data / "new-hard").stat().st_ino
    assert (data / "hard1").stat().st_ino == (data / "hard2").stat().st_ino
    assert not (data / "link").is_symlink()  # whited out by the third layer
    assert os.readlink(data / "abs") == "/data/keep"
    st = (data / "exec").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1234, 5678)
    assert sorted(os.listdir(image.rootfs / "opq")) == ["upper"]
    assert (data / "xattr").read_text() == "x\n"
    # The unpacker only logs an xattr the file system refuses; so ask the file system the store
    # is on (tmp_path holds it) whether it takes user xattrs; if it does, the xattr must be there.
    if not _takes_user_xattrs(tmp_path):
        pytest.skip(f"{tmp_path} is on a file system without user xattrs")
    assert os.getxattr(data / "xattr", "user.fixture") == b"yes"


def _takes_user_xattrs(directory: Path) -> bool:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def test_second_pull_transfers_nothing(image_service: ImageService, image_proxy: Proxy,
                                       busybox_image: Pushed) -> None:
    ref = f"{image_proxy.address}/{busybox_image.name}"
    first = pull(image_service, ref)
    assert image_proxy.requests("GET", "blobs")
    image_proxy.log.clear()
    events: list[object] = []
    again = pull(image_service, ref, events)
    assert again == first
    assert image_proxy.requests("GET") == []  # a HEAD of the tag only
    assert len(image_proxy.requests("HEAD", "manifests")) == 1
    image_proxy.log.clear()
    pull(image_service, f"{image_proxy.address}/busybox@{busybox_image.digest}")
    assert image_proxy.log == []  # by digest: not even a HEAD


def test_ensure_uses_the_local_image_without_network(image_service: ImageService,
                                                    image_proxy: Proxy,
                                                    busybox_image: Pushed) -> None:
    ref = f"{image_proxy.address}/{busybox_image.name}"
    first = asyncio.run(image_service.ensure(ref))  # not there: pulled
    assert image_proxy.requests("GET", "blobs")
    image_proxy.log.clear()
    assert asyncio.run(image_service.ensure(ref)) == first
    assert image_proxy.log == []


def test_concurrent_pulls_do_the_work_once(image_service: ImageService, image_proxy: Proxy,
                                           busybox_image: Pushed) -> None:
    tag = f"{image_proxy.address}/{busybox_image.name}"
    by_digest = f"{image_proxy.address}/busybox@{busybox_image.digest}"

    async def both() -> list[object]:
        return list(await asyncio.gather(image_service.pull(tag), image_service.pull(tag),
                                         image_service.pull(by_digest)))

    images = asyncio.run(both())
    assert len({i.digest for i in images}) == 1  # type: ignore[attr-defined]
    blob_gets = image_proxy.requests("GET", "blobs")
    assert len(blob_gets) == len(set(blob_gets)), blob_gets


def test_bearer_token(image_service: ImageService, image_proxy: Proxy,
                      busybox_image: Pushed) -> None:
    image_proxy.auth = "bearer"
    image = pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert image.digest == busybox_image.digest
    assert image_proxy.token_requests == 1  # one token for the whole pull


def test_token_with_login_and_basic_auth(tmp_path: Path, image_proxy: Proxy,
                                         busybox_image: Pushed) -> None:
    from init.services.image.auth import load_credentials

    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps(
        {"auths": {image_proxy.address: {"username": "alice", "password": "wonderland"}}}))
    ref = f"{image_proxy.address}/{busybox_image.name}"
    anonymous = ImageService(tmp_path / "anon")
    image_proxy.auth = "basic"
    with pytest.raises(AuthenticationError, match="user name and password"):
        pull(anonymous, ref)
    service = ImageService(tmp_path / "data", credentials=load_credentials(auth_file))
    assert pull(service, ref).digest == busybox_image.digest
    image_proxy.auth = "bearer"
    image_proxy.token_needs_login = True
    with pytest.raises(AuthenticationError, match="refused"):
        pull(anonymous, f"{image_proxy.address}/busybox@{busybox_image.digest}")
    other = ImageService(tmp_path / "other", credentials=load_credentials(auth_file))
    assert pull(other, ref).digest == busybox_image.digest


def test_remove(image_service: ImageService, image_registry: Registry,
                busybox_image: Pushed, busybox_v2s2_image: Pushed) -> None:
    ref = f"{image_registry.address}/{busybox_image.name}"
    digest_ref = f"{image_registry.address}/busybox@{busybox_image.digest}"
    image = pull(image_service, ref)
    pull(image_service, digest_ref)
    docker = pull(image_service, f"{image_registry.address}/{busybox_v2s2_image.name}")
    store = image_service.store
    shared_layers = set(image.layers) & set(docker.layers)
    with pytest.raises(ImageInUse):
        asyncio.run(image_service.remove(image.digest, in_use=lambda d: d == image.digest))
    # Untagging one of two references keeps the image.
    assert asyncio.run(image_service.remove(ref)) == [ref]
    assert image_service.get(digest_ref).digest == image.digest
    removed = asyncio.run(image_service.remove(digest_ref))
    assert removed == [digest_ref, image.digest]
    assert not image.rootfs.exists()
    with pytest.raises(ImageNotFound):
        image_service.get(ref)
    # Blobs the other image still uses stay; the removed image's own are gone.
    for layer in shared_layers:
        assert store.has_blob(layer)
    assert not store.has_blob(image.digest)
    assert [i.digest for i in image_service.list()] == [docker.digest]
    assert os.listdir(store.tmp) == []
