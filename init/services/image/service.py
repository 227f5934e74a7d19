"""ImageService: what the API and the pod service call.

`pull` is a coroutine: the work runs in a worker thread (see registry.py for why), progress comes
back to the event loop. Concurrent pulls of one reference share one worker; pulls of different
references to the same image meet at the store's locks, so the work is still done once.
`list` and `get` read only local metadata (small JSON files) and never touch the network.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from init.services.events import Event, Events
from init.services.image.errors import ImageInUse, ImageNotFound
from init.system import libc

# The rest loads on first use: the init constructs this service at boot, where every import
# costs (regexes compiled, JSON, tempfile...), and most boots never pull.
if TYPE_CHECKING:
    from init.services.image import reference
    from init.services.image.auth import Credential
    from init.services.image.connections import Cancel
    from init.services.image.imageconfig import ImageConfig
    from init.services.image.store import Store

LOG = logging.getLogger("mvirt-one")

ProgressCallback = Callable[[Any], None]  # receives puller.Progress, on the event loop


@dataclass(frozen=True)
class Image:
    digest: str  # of the platform manifest: the image's identity in the store
    references: tuple[str, ...]  # normalised, e.g. "docker.io/library/alpine:latest"
    repository: str
    config: ImageConfig  # Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Labels...
    rootfs: Path  # the unpacked layers; read-only by convention (containers get an overlay)
    size: int  # bytes of the (compressed) layers
    layers: tuple[str, ...]


class ImageService:
    def __init__(self, data_dir: Path, insecure_registries: Collection[str] = (),
                 credentials: Mapping[str, Credential] | None = None, *,
                 credentials_file: Path | None = None, ca_files: Sequence[Path] = (),
                 max_pulls: int = 4, events: Events | None = None) -> None:
        self.events = events or Events()
        """`credentials`: registry host[:port] → user and password; `credentials_file` (Docker's
        config.json shape) adds to them, read on the first pull. `ca_files`: PEM CAs trusted for
        registries besides the system store."""
        self.data_dir = Path(data_dir)
        self.insecure_registries = frozenset(insecure_registries)
        self.ca_files = tuple(ca_files)
        self.credentials = dict(credentials or {})
        self._credentials_file = credentials_file
        self._store: Store | None = None
        self._opened = False
        self._open_lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[str]] = {}
        self._cancel: Cancel | None = None  # made by the first pull (it imports http.client)
        self._cancelled = False
        self._cancel_lock = threading.Lock()
        self._listeners: dict[str, list[ProgressCallback]] = {}
        self.max_pulls = max_pulls
        self._pool: ThreadPoolExecutor | None = None

    def _pull_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_pulls, thread_name_prefix="pull")
        return self._pool

    @property
    def store(self) -> Store:
        if self._store is None:
            from init.services.image.store import Store

            self._store = Store(self.data_dir / "images")
        return self._store

    def _ready(self) -> Store:
        # Opened on first use, not at boot: the data directory may not exist before then.
        with self._open_lock:
            if not self._opened:
                self.store.open()
                self._opened = True
                self._load_credentials()
        return self.store

    def _load_credentials(self) -> None:
        if self._credentials_file is None:
            return
        from init.services.image.auth import CredentialsError, load_credentials

        try:
            self.credentials = {**load_credentials(self._credentials_file), **self.credentials}
        except CredentialsError as e:
            LOG.error("%s: pulling without credentials from it", e)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def cancel_all(self) -> None:
        """Stop every pull at once and refuse new ones (shutdown): their worker threads see
        their sockets shut down and end with PullCancelled within moments."""
        with self._cancel_lock:
            self._cancelled = True
            if self._cancel is not None:
                self._cancel.cancel()

    def _canceller(self) -> Cancel:
        with self._cancel_lock:
            if self._cancel is None:
                from init.services.image.connections import Cancel

                self._cancel = Cancel()
                if self._cancelled:
                    self._cancel.cancel()
            return self._cancel

    # --- pull --------------------------------------------------------------------------------

    async def pull(self, ref: str, progress_cb: ProgressCallback | None = None, *,
                   credential: Credential | None = None) -> Image:
        """Pull `ref` (if not already there) and return the image. Raises InvalidReference
        (a ValueError) for a bad reference, other ImageError subclasses for the rest."""
        from init.services.image import reference

        parsed = reference.parse(ref)
        key = str(parsed)
        loop = asyncio.get_running_loop()
        listeners = self._listeners.setdefault(key, [])
        if progress_cb is not None:
            listeners.append(progress_cb)
        try:
            future = self._inflight.get(key)
            if future is None:
                def emit(p: Any) -> None:
                    loop.call_soon_threadsafe(self._emit, key, p)

                # Their own pool: a slow registry holds its pulls' threads, never the threads
                # the other RPCs' file work runs in (asyncio's default executor).
                future = asyncio.ensure_future(loop.run_in_executor(
                    self._pull_pool(), self._pull_sync, parsed, emit, credential))
                self._inflight[key] = future
                future.add_done_callback(lambda f: self._finished(key, f))
            # Shielded: one caller going away (a cancelled RPC) must not fail the others.
            digest = await asyncio.shield(future)
        finally:
            if progress_cb is not None and progress_cb in listeners:
                listeners.remove(progress_cb)
        image = self._image(digest)
        from init.system import meminfo

        # What an image costs the VM, for whoever sizes it (in memory without a data disk).
        LOG.info("image %s ready (%d bytes of layers); %s", key, image.size, meminfo.summary())
        self.events.publish(Event("image_pulled", image=key))
        return image

    async def ensure(self, ref: str, progress_cb: ProgressCallback | None = None) -> Image:
        """The image if it is already local (no network at all, not even for a tag), else
        `pull`: what CreatePod wants ("pulls each container's image if not present")."""
        try:
            return await asyncio.to_thread(self.get, ref)  # the store's files, off the loop
        except ImageNotFound:
            return await self.pull(ref, progress_cb)

    def _finished(self, key: str, future: asyncio.Future[str]) -> None:
        self._inflight.pop(key, None)
        # Retrieved here: every waiter may have gone (a cancelled RPC), and then the failure
        # would only surface as asyncio's "exception was never retrieved".
        error = None if future.cancelled() else future.exception()
        if not self._listeners.get(key):
            self._listeners.pop(key, None)
            if error is not None:
                LOG.warning("pull of %s failed with no one waiting: %s", key, error)

    def _emit(self, key: str, progress: Any) -> None:
        for cb in list(self._listeners.get(key, ())):
            cb(progress)

    def _pull_sync(self, ref: reference.Reference, emit: ProgressCallback,
                   credential: Credential | None) -> str:
        from init import openssl
        from init.services.image.puller import Puller  # http.client, tarfile: on first pull

        openssl.load()  # TLS, and OpenSSL's hashes for the digests
        cancel = self._canceller()
        cancel.check()
        store = self._ready()
        try:
            # Shared: removals wait for running pulls before deleting blobs.
            with store.pulling():
                puller = Puller(store, ref, insecure=self.insecure_registries,
                                credential=credential or self.credentials.get(ref.registry),
                                progress=emit, ca_files=self.ca_files, cancel=cancel)
                digest = puller.run()
            if store.in_memory():
                store.drop_layer_blobs()
        finally:
            libc.release_free_heap()  # the pull's buffers, freed below what the init keeps
        return digest

    # --- local queries -----------------------------------------------------------------------

    def _image(self, digest: str, refs: Mapping[str, str] | None = None) -> Image:
        from init.services.image.imageconfig import ImageConfig

        store = self._ready()
        meta = store.read_meta(digest)
        if meta is None or not store.rootfs(digest).is_dir():
            raise ImageNotFound(f"image {digest} is not in the store")
        if refs is None:
            refs = store.read_refs()
        return Image(
            digest=digest,
            references=tuple(sorted(r for r, d in refs.items() if d == digest)),
            repository=meta.get("repository", ""),
            config=ImageConfig.from_json(meta.get("config", {})),
            rootfs=store.rootfs(digest),
            size=int(meta.get("size", 0)),
            layers=tuple(la["digest"] for la in meta.get("layers", ())),
        )

    def list(self) -> list[Image]:
        store = self._ready()
        refs = store.read_refs()
        images = []
        for meta in store.metas():
            try:
                images.append(self._image(meta["digest"], refs))
            except (ImageNotFound, KeyError):
                continue  # being removed
        return images

    def _lookup(self, ref_or_digest: str) -> tuple[str, str | None]:
        """(image digest, the normalised reference or None if a digest was given)."""
        from init.services.image import reference

        store = self._ready()
        if reference.is_digest(ref_or_digest):
            image = store.find_image(ref_or_digest)
            if image is None:
                raise ImageNotFound(f"no image with digest {ref_or_digest}")
            return image, None
        parsed = reference.parse(ref_or_digest)
        image = store.read_refs().get(str(parsed))
        if image is None and parsed.digest:
            image = store.find_image(parsed.digest)
        if image is None or not store.is_complete(image):
            raise ImageNotFound(f"image {parsed} is not present (pull it first)")
        return image, str(parsed)

    def get(self, ref_or_digest: str) -> Image:
        """The local image for a reference or digest; ImageNotFound if it was never pulled."""
        image, _ = self._lookup(ref_or_digest)
        return self._image(image)

    # --- remove ------------------------------------------------------------------------------

    async def remove(self, ref_or_digest: str,
                     in_use: Callable[[str], bool] = lambda digest: False, *,
                     collect: bool = True) -> builtins.list[str]:
        """Remove a reference; the image goes with its last reference, or at once when named by
        digest. Refused with ImageInUse while `in_use(image digest)` says a container uses it.
        Returns what was removed (references and, if deleted, the image digest)."""
        image, ref = await asyncio.to_thread(self._lookup, ref_or_digest)
        store = self.store
        refs = await asyncio.to_thread(store.read_refs)
        remaining = [r for r, d in refs.items() if d == image and r != ref]
        delete_image = ref is None or not remaining
        if delete_image and in_use(image):
            raise ImageInUse(f"image {ref or image} is used by a container: remove the pod first")
        removed = [ref] if ref else sorted(r for r, d in refs.items() if d == image)

        def drop_refs(current: dict[str, str]) -> None:
            for r in removed:
                current.pop(r, None)

        await asyncio.to_thread(store.update_refs, drop_refs)
        if delete_image:
            await asyncio.to_thread(store.forget_image, image)
            removed.append(image)
        for what in removed:
            self.events.publish(Event("image_removed", image=what))
        if collect and delete_image:
            await self.collect()
        return removed

    async def collect(self) -> None:
        """Delete the blobs no image uses; waits for running pulls (call it holding nothing
        another RPC needs)."""
        await asyncio.to_thread(self.store.collect_blobs)
