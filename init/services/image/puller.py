"""One pull, start to end, in the calling (worker) thread: resolve, fetch, verify, unpack, record.

Order matters for the guarantees: every document and blob is verified and stored before it is
parsed or unpacked; the rootfs is built in tmp/ and renamed into place; the metadata is written
after the rootfs (it is what makes the image "complete"); references are recorded last.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from init.services.image import imageconfig
from init.services.image import manifest as mf
from init.services.image.auth import Credential
from init.services.image.connections import Cancel
from init.services.image.errors import DigestMismatch, NoSpace, UnsupportedImage
from init.services.image.reference import Reference
from init.services.image.registry import RegistryClient
from init.services.image.store import Store
from init.services.image.unpack import LayerApplier


@dataclass(frozen=True)
class Progress:
    """One step of a pull, for a progress bar. `layer` is a layer digest for per-layer steps."""

    status: str  # resolving, downloading, exists, downloaded, extracting, extracted, done
    layer: str = ""
    done: int = 0  # bytes
    total: int = 0
    image: str = ""  # the image digest, once known


ProgressFn = Callable[[Progress], None]


def record_ref(store: Store, ref: Reference, image: str, index_digest: str | None = None) -> None:
    if index_digest:
        with store.image_lock(image):
            meta = store.read_meta(image)
            if meta is not None and index_digest not in meta["index_digests"]:
                meta["index_digests"].append(index_digest)
                store.write_meta(image, meta)
    def add(refs: dict[str, str]) -> None:
        refs[str(ref)] = image

    store.update_refs(add)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Puller:
    def __init__(self, store: Store, ref: Reference, *, insecure: Collection[str],
                 credential: Credential | None, progress: ProgressFn,
                 ca_files: Sequence[Path] = (), cancel: Cancel | None = None) -> None:
        self.store = store
        self.ref = ref
        self.progress = progress
        self.client = RegistryClient(ref, insecure=insecure, credential=credential,
                                     ca_files=ca_files, cancel=cancel)
        self._stored: set[str] = set()  # blobs this pull added: removed if it runs out of space

    def run(self) -> str:
        """Pull the image; returns its digest (of the platform manifest)."""
        ref = self.ref
        self.progress(Progress("resolving"))
        if ref.digest and (image := self.store.find_image(ref.digest)):
            record_ref(self.store, ref, image)
            return self._done(image)
        try:
            top = ref.digest or self.client.resolve(ref.manifest_ref)
            if top and (image := self.store.find_image(top)):
                record_ref(self.store, ref, image)
                return self._done(image)
            body, media_type, digest = self._manifest(top or ref.manifest_ref, top)
            index_digest = None
            if media_type in mf.INDEX_TYPES:
                index_digest = digest
                entry = mf.choose_platform(body, f"{ref} index")
                body, media_type, digest = self._manifest(entry.digest, entry.digest)
                if media_type not in mf.MANIFEST_TYPES:
                    raise UnsupportedImage(f"{ref}: index entry {digest} is not a manifest")
            manifest = mf.parse_manifest(body, media_type, str(ref))
            if not self.store.is_complete(digest):
                with self._room(manifest):
                    config = self._config(manifest)
                    for layer in manifest.layers:
                        self._layer(layer, digest)
                    self._unpack(digest, manifest, config)
        finally:
            self.client.close()
        record_ref(self.store, ref, digest, index_digest)
        return self._done(digest)

    @contextlib.contextmanager
    def _room(self, manifest: mf.Manifest) -> Iterator[None]:
        """Check the room the image needs before anything is fetched; if the space runs out
        all the same (layers unpack to more than their compressed size, others write too),
        remove what this pull stored and fail with NoSpace."""
        store = self.store
        download = sum(la.size for la in manifest.layers if not store.has_blob(la.digest, la.size))
        # The unpacked layers are at least as large as the compressed ones: a lower bound.
        needed = download + sum(la.size for la in manifest.layers)
        free = store.free_bytes()
        if needed > free:
            store.remove_unreferenced(self._stored)
            raise NoSpace(f"{self.ref}: not enough space in {store.root}: the image needs at "
                          f"least {_mib(needed)} ({_mib(download)} to download, "
                          f"{_mib(needed - download)} unpacked), {_mib(free)} free")
        try:
            yield
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            store.remove_unreferenced(self._stored)
            raise NoSpace(f"{self.ref}: ran out of space in {store.root} (the image needs more "
                          f"than the {_mib(free)} that were free; at least {_mib(needed)} "
                          "was estimated); what this pull stored was removed") from None

    def _done(self, image: str) -> str:
        self.progress(Progress("done", image=image))
        return image

    def _manifest(self, reference: str, digest: str | None) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index: from the store if we have it,
        else from the registry, verified against `digest` (or the registry's header) first."""
        if digest and self.store.has_blob(digest):
            body = self.store.read_blob(digest, mf.MAX_MANIFEST)
            return body, mf.media_type_of(body, "", f"{self.ref} manifest"), digest
        body, content_type = self.client.manifest(reference)
        algorithm = (digest or "sha256:").partition(":")[0]
        actual = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
        if digest and actual != digest:
            raise DigestMismatch(f"{self.ref}: manifest {reference} does not match its digest "
                                 f"{digest} (got {actual})")
        media_type = mf.media_type_of(body, content_type, f"{self.ref} manifest")
        if self.store.put_bytes(actual, body):
            self._stored.add(actual)
        return body, media_type, actual

    def _config(self, manifest: mf.Manifest) -> imageconfig.ImageConfig:
        desc = manifest.config
        if desc.size > mf.MAX_CONFIG:
            raise UnsupportedImage(f"{self.ref}: image config of {desc.size} bytes is too large")
        if self.store.ingest(desc.digest, desc.size,
                             lambda f: self.client.fetch_blob(desc.digest, desc.size, f)):
            self._stored.add(desc.digest)
        config = imageconfig.parse(self.store.read_blob(desc.digest, mf.MAX_CONFIG), str(self.ref))
        if len(config.diff_ids) != len(manifest.layers):
            raise UnsupportedImage(f"{self.ref}: {len(manifest.layers)} layers but "
                                   f"{len(config.diff_ids)} diff_ids in the config")
        return config

    def _layer(self, desc: mf.Descriptor, image: str) -> None:
        last = [0]
        step = max(desc.size // 100, 256 << 10)

        def on_bytes(done: int) -> None:
            # About a hundred updates per layer at most: the API streams each one.
            if done - last[0] >= step or done == desc.size:
                last[0] = done
                self.progress(Progress("downloading", desc.digest, done, desc.size, image))

        self.progress(Progress("downloading", desc.digest, 0, desc.size, image))
        fetched = self.store.ingest(
            desc.digest, desc.size,
            lambda f: self.client.fetch_blob(desc.digest, desc.size, f, on_bytes))
        if fetched:
            self._stored.add(desc.digest)
        self.progress(Progress("downloaded" if fetched else "exists", desc.digest, desc.size,
                               desc.size, image))

    def _unpack(self, digest: str, manifest: mf.Manifest,
                config: imageconfig.ImageConfig) -> None:
        store = self.store
        with store.image_lock(digest):
            if store.is_complete(digest):
                return  # a concurrent pull of the same image finished it meanwhile
            tmp = store.new_tmp_dir("rootfs-")
            try:
                os.chmod(tmp, 0o755)
                with LayerApplier(tmp, check=self.client.check_cancelled) as applier:
                    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
                        self.progress(Progress("extracting", layer.digest, 0, layer.size, digest))
                        with open(store.blob_path(layer.digest), "rb") as f:
                            applier.apply(f, diff_id)
                        self.progress(Progress("extracted", layer.digest, layer.size, layer.size,
                                               digest))
                store.discard(store.rootfs(digest))  # a leftover without metadata
                os.replace(tmp, store.rootfs(digest))
            except BaseException:
                store.discard(tmp)
                raise
            store.write_meta(digest, {
                "digest": digest,
                "media_type": manifest.media_type,
                "repository": self.ref.name,
                "index_digests": [],
                "config_digest": manifest.config.digest,
                "layers": [{"digest": la.digest, "size": la.size, "media_type": la.media_type}
                           for la in manifest.layers],
                "size": sum(la.size for la in manifest.layers),
                "config": config.to_json(),
            })
