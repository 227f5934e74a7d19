"""Hostile registries and layers, end to end: nothing lands outside the rootfs, nothing
unverified is used, the store stays consistent, and a failed pull can be retried."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from init.services.image import ImageService
from init.services.image.errors import DigestMismatch, RegistryError, UnsafeLayer
from tests.fixtures.images import build
from tests.fixtures.images.build import Entry
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry, free_port

pytestmark = pytest.mark.host


def pull(service: ImageService, ref: str):  # type: ignore[no-untyped-def]
    return asyncio.run(service.pull(ref))


def assert_store_clean(service: ImageService) -> None:
    """A failed pull leaves no image, no reference, no rootfs and nothing half-written."""
    store = service.store
    assert os.listdir(store.tmp) == []
    assert list(store.images.iterdir()) == []
    assert list(store.rootfs_dir.iterdir()) == []
    assert store.read_refs() == {}


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A directory outside every rootfs that hostile layers aim at (by `..` and by absolute
    path through /tmp); it must stay empty."""
    target = Path("/tmp") / f"mvirt-one-escape-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    yield target
    leftovers = os.listdir(target)
    for name in leftovers:
        os.unlink(target / name)
    target.rmdir()
    assert leftovers == [], f"a layer wrote outside the rootfs: {leftovers}"


def test_blob_not_matching_its_digest(image_service: ImageService, image_proxy: Proxy,
                                      busybox_image: Pushed, image_registry: Registry) -> None:
    ref = f"{image_proxy.address}/{busybox_image.name}"
    # Find the layer digest through a clean pull elsewhere, then corrupt it on the way.
    probe = ImageService(image_service.store.root.parent / "probe")
    layer = pull(probe, f"{image_registry.address}/{busybox_image.name}").layers[0]
    image_proxy.corrupt = {layer}
    with pytest.raises(DigestMismatch, match=layer):
        pull(image_service, ref)
    assert not image_service.store.has_blob(layer)
    assert_store_clean(image_service)
    image_proxy.corrupt = set()
    assert pull(image_service, ref).digest == busybox_image.digest


def test_registry_dies_mid_blob_then_retry(image_service: ImageService, image_proxy: Proxy,
                                           busybox_image: Pushed) -> None:
    ref = f"{image_proxy.address}/{busybox_image.name}"
    image_proxy.cut_after, image_proxy.cuts = 100_000, -1  # every blob download dies
    with pytest.raises(RegistryError, match=r"failed at \d+ of \d+ bytes"):
        pull(image_service, ref)
    assert_store_clean(image_service)
    blobs = image_service.store.blobs / "sha256"
    assert not blobs.exists() or all(p.stat().st_size > 0 for p in blobs.iterdir())
    image_proxy.cuts = 0  # the registry is back
    assert pull(image_service, ref).digest == busybox_image.digest


def test_interrupted_blob_resumes_with_range(image_service: ImageService, image_proxy: Proxy,
                                             busybox_image: Pushed) -> None:
    image_proxy.cut_after, image_proxy.cuts = 300_000, 1
    image = pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert image.digest == busybox_image.digest
    statuses = [s for m, p, s in image_proxy.log if m == "GET" and "/blobs/" in p]
    assert -200 in statuses and 206 in statuses  # cut once, then resumed, not restarted


@pytest.mark.parametrize("content_range", ["", "bytes */1000", "bytes 5-9/10", "pages 0-1/2"])
def test_unusable_206_fails_after_bounded_retries(image_service: ImageService,
                                                  image_proxy: Proxy, busybox_image: Pushed,
                                                  content_range: str) -> None:
    """A server that answers every blob download 206 with no usable Content-Range: a few
    attempts with back-off, then a clear error (and the store's locks released)."""
    image_proxy.bad_range = content_range
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"unusable Content-Range .* after 4 attempts"):
        pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert time.monotonic() - start < 30
    assert len(image_proxy.requests("GET", "blobs")) == 4
    assert_store_clean(image_service)
    image_proxy.bad_range = None
    assert pull(image_service, f"{image_proxy.address}/{busybox_image.name}").digest \
        == busybox_image.digest


def test_bad_range_answer_to_a_resume_starts_over(image_service: ImageService,
                                                  image_proxy: Proxy,
                                                  busybox_image: Pushed) -> None:
    """Cut once, then the resume is answered badly: the blob is fetched again from the start,
    without a Range."""
    image_proxy.cut_after, image_proxy.cuts = 300_000, 1
    image_proxy.bad_range, image_proxy.bad_range_on_resume = "bytes */1", True
    image = pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert image.digest == busybox_image.digest
    statuses = [s for m, p, s in image_proxy.log if m == "GET" and "/blobs/" in p]
    assert statuses.count(-200) == 1 and statuses.count(206) == 1  # cut, bad answer to resume
    assert statuses[statuses.index(206) + 1] == 200  # then all of it again, no Range


def test_registry_down(image_service: ImageService) -> None:
    ref = f"127.0.0.1:{free_port()}/nothing:latest"
    with pytest.raises(RegistryError, match="refused"):
        pull(image_service, ref)
    assert_store_clean(image_service)


def _hostile_cases(outside: Path) -> dict[str, list[list[Entry]]]:
    up = "../" * 12 + str(outside).lstrip("/")
    ok = Entry("ok", data=b"fine\n")
    return {
        "dotdot-path": [[ok, Entry(f"{up}/pwned", data=b"x")]],
        "absolute-path": [[ok, Entry(f"{outside}/pwned", data=b"x")]],
        "dotdot-hardlink": [[Entry("h", "hardlink", target=f"{up}/victim")]],
        "absolute-hardlink": [[Entry("h", "hardlink", target="/etc/passwd")]],
        "dotdot-whiteout": [[ok, Entry("x/../../.wh.ok")]],
    }


@pytest.mark.parametrize("case", ["dotdot-path", "absolute-path", "dotdot-hardlink",
                                  "absolute-hardlink", "dotdot-whiteout"])
def test_refused_layers(case: str, image_service: ImageService, image_registry: Registry,
                        outside: Path) -> None:
    (outside.parent / f"{outside.name}-victim").write_text("victim")
    try:
        layers = [build.tar_layer(layer) for layer in _hostile_cases(outside)[case]]
        build.push_layers(image_registry, "hostile", case, layers)
        with pytest.raises(UnsafeLayer):
            pull(image_service, f"{image_registry.address}/hostile:{case}")
        assert_store_clean(image_service)
    finally:
        (outside.parent / f"{outside.name}-victim").unlink()


def test_links_through_symlinks_stay_inside(image_service: ImageService,
                                            image_registry: Registry, outside: Path) -> None:
    """Symlinks pointing at the host's / or /tmp are the container's / and /tmp: entries and
    hard links written through them land inside the rootfs."""
    host_passwd = os.stat("/etc/passwd")
    lower = [Entry("etc/", "dir", mode=0o755),
             Entry("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"),
             Entry("root-link", "symlink", target="/"),
             Entry("out", "symlink", target=str(outside)),
             # Lexically inside, physically "/.." once root-link is followed: stops at the root.
             Entry("up", "symlink", target="root-link/.."),
             Entry("loop", "symlink", target="loop")]
    upper = [Entry("out/pwned", data=b"inside\n"),
             Entry("root-link/tmp/pwned2", data=b"inside\n"),
             Entry("hl", "hardlink", target="root-link/etc/passwd"),
             Entry("up/dir/file", data=b"inside\n")]
    build.push_layers(image_registry, "hostile", "through",
                      [build.tar_layer(lower), build.tar_layer(upper)])
    image = pull(image_service, f"{image_registry.address}/hostile:through")
    root = image.rootfs
    assert (root / str(outside).lstrip("/") / "pwned").read_text() == "inside\n"
    assert (root / "tmp" / "pwned2").read_text() == "inside\n"
    assert (root / "dir" / "file").read_text() == "inside\n"
    hl = os.stat(root / "hl")
    assert hl.st_ino == os.stat(root / "etc" / "passwd").st_ino != host_passwd.st_ino
    assert os.readlink(root / "out") == str(outside)  # kept verbatim for the container


def test_relative_symlinks_climbing_above_the_root(image_service: ImageService,
                                                   image_registry: Registry,
                                                   outside: Path) -> None:
    """Accepted as Docker accepts them (real images have them), stored verbatim, and whatever a
    later layer writes through them lands inside the rootfs."""
    up = "../" * 12 + str(outside).lstrip("/")
    lower = [Entry("esc", "symlink", target=up),
             Entry("usr/", "dir", mode=0o755), Entry("usr/lib/", "dir", mode=0o755),
             Entry("usr/lib/os-release", "symlink", target="../../../../etc/os-release"),
             Entry("etc/", "dir", mode=0o755),
             Entry("etc/os-release", data=b"ID=fixture\n")]
    upper = [Entry("esc/pwned", data=b"inside\n"),
             Entry("usr/lib/os-release-copy", "hardlink", target="etc/os-release")]
    build.push_layers(image_registry, "hostile", "climbing", [build.tar_layer(lower),
                                                             build.tar_layer(upper)])
    image = pull(image_service, f"{image_registry.address}/hostile:climbing")
    root = image.rootfs
    assert os.readlink(root / "esc") == up
    assert (root / str(outside).lstrip("/") / "pwned").read_text() == "inside\n"
    assert os.readlink(root / "usr" / "lib" / "os-release") == "../../../../etc/os-release"
    assert (root / "usr" / "lib" / "os-release-copy").read_text() == "ID=fixture\n"


def test_symlink_loop_is_refused(image_service: ImageService, image_registry: Registry) -> None:
    layers = [build.tar_layer([Entry("loop", "symlink", target="loop")]),
              build.tar_layer([Entry("loop/x", data=b"x")])]
    build.push_layers(image_registry, "hostile", "loop", layers)
    with pytest.raises(UnsafeLayer, match="symlinks"):
        pull(image_service, f"{image_registry.address}/hostile:loop")
    assert_store_clean(image_service)


def test_layer_not_matching_diff_id(image_service: ImageService,
                                    image_registry: Registry) -> None:
    """The blob matches its digest, but not the config's diff_id: refused before use."""
    import json

    from tests.fixtures.images.registry import OCI_MANIFEST

    layer = build.tar_layer([Entry("f", data=b"real\n")])
    blob, _ = build.compress(layer, "gzip")
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": image_registry.push_blob("hostile", cfg), "size": len(cfg)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": image_registry.push_blob("hostile", blob),
                            "size": len(blob)}]}
    image_registry.push_manifest("hostile", "diffid", manifest, OCI_MANIFEST)
    with pytest.raises(DigestMismatch, match="diff_id"):
        pull(image_service, f"{image_registry.address}/hostile:diffid")
    assert_store_clean(image_service)


def test_retries_on_429_and_5xx(image_service: ImageService, image_proxy: Proxy,
                                busybox_image: Pushed) -> None:
    image_proxy.fail_next = [503, 429, 502]
    image = pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert image.digest == busybox_image.digest
    assert [s for _, _, s in image_proxy.log[:4]] == [503, 429, 502, 200]


def test_too_many_failures_is_a_clear_error(image_service: ImageService, image_proxy: Proxy,
                                            busybox_image: Pushed) -> None:
    image_proxy.fail_next = [503] * 10
    with pytest.raises(RegistryError, match=r"HTTP 503 .*after 4 attempts"):
        pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
    assert_store_clean(image_service)


def test_blob_redirect_carries_no_credentials(image_service: ImageService, image_proxy: Proxy,
                                              image_registry: Registry,
                                              busybox_image: Pushed) -> None:
    """Registries send blobs from their storage by redirect; the token stays with the
    registry."""
    storage = Proxy(image_registry.address).start()
    try:
        image_proxy.auth = "bearer"
        image_proxy.redirect_blobs = storage.address
        image = pull(image_service, f"{image_proxy.address}/{busybox_image.name}")
        assert image.digest == busybox_image.digest
        assert storage.requests("GET", "blobs")
        assert {auth for _, auth in storage.authorizations} == {None}
        assert any(auth for path, auth in image_proxy.authorizations if "/manifests/" in path)
    finally:
        storage.stop()
