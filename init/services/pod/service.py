"""PodService: create, start, stop and delete pods; the states the API reports.

Each container is a runtime `create` with its log files as stdout/stderr (opened by the init:
the container can never block on them, and what it wrote before exiting is on disk), then a
`start`. Its exit comes from the reaper (the container process is re-parented to the init once the
runtime's `create` has exited), never from polling.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from init.services.cancel import to_the_end
from init.services.errors import ShuttingDown
from init.services.events import Event, Events
from init.services.pod import ids, rootfs, spec
from init.services.pod import resources as pod_resources
from init.services.pod import usage as usage_mod
from init.services.pod.errors import InvalidPod, PodExists, PodNotFound, WrongState
from init.services.pod.logwriter import LogWriter
from init.services.pod.model import (
    Container,
    ContainerSpec,
    CState,
    Pod,
    PState,
    Resources,
    RunningCounts,
)
from init.services.task.runtime import EXEC_WORK_PREFIX, Runtime, RuntimeError_
from init.system import cgroups, fstree
from init.system.reaper import Reaper, clock

if TYPE_CHECKING:
    from init.services.image import Image, ImageService
    from init.services.task.exec import ExecProcess

LOG = logging.getLogger("mvirt-one")
# What the containers' writable layers leave of a data tmpfs for the init's images, logs, files
WRITABLE_RESERVE = 16 << 20
PodUsages = builtins.list[tuple[Pod, builtins.list[usage_mod.Usage]]]
# The longest grace a container gets between SIGTERM and SIGKILL (StopPod, Shutdown): a client
# asking for years would pin the VM's power-off.
MAX_GRACE = 600.0

# The pod's IP address: pods share the VM's network namespace, so it is the VM's.
AddressLookup = Callable[[], Awaitable[str]]


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


class PodService:
    TAKE_ATTEMPTS = 3  # a pod's image removed again each time it was pulled again: give up

    def __init__(self, data_dir: Path, runtime: Path, reaper: Reaper, images: ImageService, *,
                 address: AddressLookup, default_grace: float, no_pivot: bool | None = None,
                 resolv_conf: Path = Path("/etc/resolv.conf"),
                 cgroup_tree: cgroups.Tree | None = None, events: Events | None = None,
                 log_max_bytes: int = 10 << 20, log_max_files: int = 5,
                 own_writable_space: bool = False) -> None:
        # PID 1 mode: the containers' writable layers get space of their own where the data
        # directory is a tmpfs (rootfs.writable_space).
        self.own_writable_space = own_writable_space
        self.writable_root: Path | None = None
        self.log_max_bytes = log_max_bytes  # a log file's size before it is rotated
        self.log_max_files = log_max_files  # files kept per output, the current one included
        self.events = events or Events()
        self.cgroup_tree = cgroup_tree  # PID 1 mode: the pods' cgroup (cgroups.py)
        self.default_pids = pod_resources.default_pids(
            cgroup_tree.pids_max if cgroup_tree else None)
        self.data_dir = data_dir
        self.dir = data_dir / "pods"
        self.runtime = Runtime(runtime, data_dir / "runtime", reaper, no_pivot=no_pivot)
        self.reaper = reaper
        self.images = images
        self.default_grace = default_grace  # StopPod without a timeout
        self._address = address
        self._resolv_conf = resolv_conf
        self.pods: dict[str, Pod] = {}
        self._prepared = False
        # Held by RemoveImage from its in-use check to the end of the removal; a container takes
        # its image under it (see _take_image).
        self.image_use = asyncio.Lock()
        self._undoing: set[asyncio.Task[None]] = set()  # abandoned creations being undone
        self.closing = False  # the way down began: no new pod, start or exec
        # When the containers being stopped get SIGKILL (loop time); a later, shorter grace
        # moves it earlier and wakes the stops through `_kill_moved`.
        self._kill_at: float | None = None
        self._kill_moved = asyncio.Event()

    # --- what Health, Shutdown and RemoveImage ask ------------------------------------------

    def running_counts(self) -> RunningCounts:
        running = [c for p in self.pods.values() for c in p.containers
                   if c.state == CState.RUNNING]
        pods = sum(1 for p in self.pods.values() if p.state == PState.RUNNING)
        return RunningCounts(pods, len(running))

    def close(self) -> None:
        """Refuse new work from now on: the way down began."""
        self.closing = True

    def _check_open(self) -> None:
        if self.closing:
            raise ShuttingDown("the init is shutting down: no new pods, starts or execs")

    def hurry(self, grace_seconds: float) -> None:
        """Containers being stopped get SIGKILL after `grace_seconds` from now, if that is
        sooner than their grace (a later Shutdown with a shorter grace wins)."""
        kill_at = asyncio.get_running_loop().time() + grace_seconds
        if self._kill_at is None or kill_at < self._kill_at:
            self._kill_at = kill_at
            self._kill_moved.set()
            self._kill_moved = asyncio.Event()

    async def stop_all(self, grace_seconds: float) -> None:
        """On the way down: stop everything, then drop the runtime's state and the overlay
        mounts (in local mode they would outlive us on the host); the logs stay on disk."""
        self.close()
        self.hurry(grace_seconds)
        if self._undoing:
            await asyncio.wait(self._undoing)
        pods = list(self.pods.values())
        await asyncio.gather(*(self._stop(p, grace_seconds) for p in pods))
        for pod in pods:
            for c in pod.containers:
                if c.in_runtime:
                    with contextlib.suppress(RuntimeError_):
                        await self.runtime.delete(c.runtime_id)
                if c.overlay:
                    rootfs.unmount(c.dir)
                    c.overlay = False

    def image_in_use(self, digest: str) -> bool:
        return any(c.image_digest == digest for p in self.pods.values() for c in p.containers)

    async def clean_leftovers(self) -> int:
        """Remove what pods of an earlier init left (a reboot on the same data disk, a local
        init that died): runtime state (`delete --force` stops anything still running), overlay
        mounts and directories. None of it is a live pod of ours. Returns how many there were."""
        stale = sorted(p.name for p in _entries(self.runtime.root) if p.is_dir()
                       and not p.name.startswith(EXEC_WORK_PREFIX))
        for cid in stale:
            try:
                await self.runtime.delete(cid)
            except RuntimeError_ as e:
                LOG.warning("leftover container %s: %s", cid, e)
        pods = _entries(self.dir)
        if stale or pods:
            LOG.info("removing what an earlier init left: %d containers, %d pod directories",
                     len(stale), len(pods))

        def remove() -> None:
            rootfs.unmount_under(self.dir)
            for entry in [*_entries(self.runtime.root), *pods]:
                fstree.remove_logged(entry, LOG)

        await asyncio.to_thread(remove)
        return len(pods)

    # --- lookups ---------------------------------------------------------------------------

    def get(self, pod_id: str) -> Pod:
        pod = self.pods.get(pod_id)
        if pod is None:
            raise PodNotFound(f"no pod {pod_id!r}")
        return pod

    def list(self) -> list[Pod]:
        return sorted(self.pods.values(), key=lambda p: p.id)

    # --- create ----------------------------------------------------------------------------

    async def create(self, pod_id: str, name: str, specs: Sequence[ContainerSpec]) -> Pod:
        self._check_open()
        ids.check("pod", pod_id)
        if name:
            ids.check_name(name)
        if not specs:
            raise InvalidPod("a pod needs at least one container")
        seen: set[str] = set()
        for s in specs:
            ids.check("container", s.id)
            if s.id in seen:
                raise InvalidPod(f"container id {s.id!r} appears twice in pod {pod_id}")
            seen.add(s.id)
            ids.check_texts(f"container {s.id}", [s.image, s.working_dir, *s.command, *s.args,
                                                 *s.env])
            pod_resources.check(s.resources, f"container {s.id}")
            if not s.image:
                raise InvalidPod(f"container {s.id} has no image")
            from init.services.image import reference

            try:
                reference.parse(s.image)
            except ValueError as e:
                raise InvalidPod(f"container {s.id}: {e}") from e
        while (existing := self.pods.get(pod_id)) is not None:
            if existing.settling is None:
                raise PodExists(f"pod {pod_id!r} already exists")
            # Another CreatePod of this id is under way, or being undone for a client that went
            # away: the same client's retry must not get ALREADY_EXISTS for that.
            await asyncio.wait([existing.settling])
        pod_dir = self.dir / pod_id
        containers = [Container(s, f"{pod_id}_{i}", pod_dir / "containers" / s.id, pod_id=pod_id)
                      for i, s in enumerate(specs)]
        pod = Pod(pod_id, name or pod_id, pod_dir, containers)
        self.pods[pod_id] = pod  # from here on, the id is taken
        settled = pod.settling = asyncio.get_running_loop().create_future()
        try:
            await self._build(pod)
        except asyncio.CancelledError:
            # The client went away: as containerd's CRI does, undo the creation whole, so the
            # pod does not exist for anyone and a retry starts clean (ids free, nothing left in
            # the runtime). Every step that was under way has finished (cancel.to_the_end).
            undo = asyncio.ensure_future(self._undo(pod))
            self._undoing.add(undo)
            undo.add_done_callback(self._undoing.discard)
            undo.add_done_callback(lambda _: settled.set_result(None))
            raise
        pod.settling = None
        settled.set_result(None)
        return pod

    async def _build(self, pod: Pod) -> None:
        if not self._prepared:
            await asyncio.to_thread(rootfs.ensure_upper_fs, self.dir)
            if self.own_writable_space:
                self.writable_root = await asyncio.to_thread(
                    rootfs.writable_space, self.data_dir, WRITABLE_RESERVE)
            self._prepared = True
        async with pod.busy:
            try:
                pod.ip_address = await self._address()
            except Exception as e:
                LOG.warning("pod %s: no address (%s)", pod.id, e)
            etc = await asyncio.to_thread(self._pod_dir, pod)
            for c in pod.containers:
                try:
                    await self._create_container(pod, c, etc)
                except Exception as e:
                    c.state, c.reason = CState.FAILED, "StartError"
                    c.error = str(e) or type(e).__name__
                    pod.error = f"container {c.id}: {c.error}"
                    LOG.error("pod %s: %s", pod.id, pod.error)
                    break
            else:
                LOG.info("pod %s created (%d containers)", pod.id, len(pod.containers))

    async def _undo(self, pod: Pod) -> None:
        """Remove an abandoned pod whole: its processes, runtime state, mounts and files."""
        LOG.info("pod %s: its client went away during CreatePod: undoing it", pod.id)
        for c in pod.containers:
            if c.in_runtime and not c.pid:  # created, but the caller was gone before the pid
                with contextlib.suppress(OSError, ValueError):
                    c.pid = int((c.dir / "pid").read_text())
                    self._watch(c)
        try:
            await self._remove(pod)
        except Exception:
            LOG.exception("pod %s: undoing it failed", pod.id)
            self.pods.pop(pod.id, None)

    def _pod_dir(self, pod: Pod) -> dict[str, Path]:
        """A fresh directory for the pod with its /etc files (in a thread: removing what an
        earlier init left there can take a while)."""
        fstree.remove_tree(pod.dir)
        pod.dir.mkdir(parents=True)
        hosts = pod.dir / "hosts"
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if pod.ip_address:
            lines.append(f"{pod.ip_address}\t{pod.name}")
        else:
            lines[0] += f" {pod.name}"
        hosts.write_text("\n".join(lines) + "\n")
        (pod.dir / "hostname").write_text(pod.name + "\n")
        resolv = pod.dir / "resolv.conf"
        try:
            shutil.copyfile(self._resolv_conf, resolv)
        except OSError:
            resolv.write_text("")
        return {"/etc/hosts": hosts, "/etc/hostname": pod.dir / "hostname",
                "/etc/resolv.conf": resolv}

    async def _create_container(self, pod: Pod, c: Container, etc: dict[str, Path]) -> None:
        from init.services.image.errors import ImageError

        try:
            image = await self._take_image(pod, c)
        except ImageError as e:
            raise RuntimeError_(f"image {c.spec.image}: {e}") from e
        cfg = image.config

        def bundle() -> None:
            """The bundle, in one step off the loop (the image's /etc/passwd is read, the
            rootfs mounted, config.json written)."""
            c.dir.mkdir(parents=True)
            proc = spec.process(entrypoint=cfg.entrypoint, cmd=cfg.cmd, image_env=cfg.env,
                                image_workdir=cfg.working_dir, image_user=cfg.user,
                                command=c.spec.command, args=c.spec.args, env=c.spec.env,
                                working_dir=c.spec.working_dir, rootfs=image.rootfs)
            # c.overlay is set even if the caller is gone by then: the undo must know.
            if self.writable_root is not None:
                c.layer = self.writable_root / c.runtime_id
            root, c.overlay = rootfs.prepare(image.rootfs, c.dir, c.layer)
            doc = spec.config(
                proc, rootfs=root, hostname=pod.name, etc_files=etc,
                resources=pod_resources.linux_resources(c.spec.resources,
                                                        default_pids_limit=self.default_pids),
                cgroups_path=cgroups.container_path(self.cgroup_tree, pod.id, c.id)
                if self.cgroup_tree else None)
            (c.dir / "config.json").write_text(json.dumps(doc, indent=1))

        await to_the_end(asyncio.to_thread(bundle))
        for name in ("stdout", "stderr"):
            c.writers[name] = LogWriter(c.log_path(name), max_bytes=self.log_max_bytes,
                                        max_files=self.log_max_files)
        c.in_runtime = True
        c.since = clock()
        try:
            c.pid = await self.runtime.create(c.runtime_id, c.dir, c.dir / "pid",
                                              stdout=c.writers["stdout"].write_end,
                                              stderr=c.writers["stderr"].write_end)
        finally:
            for writer in c.writers.values():
                writer.start()  # the container (if any) holds the write ends now
        c.state = CState.CREATED
        c.cgroup = cgroups.path_of(c.pid)
        if c.cgroup is not None:
            c.oom_kills_at_start = cgroups.oom_kills(c.cgroup)
        self._watch(c)

    def _watch(self, c: Container) -> None:
        self.reaper.watch(c.pid, c.since).add_done_callback(
            lambda f: self._exited(c, f.result()))

    async def _take_image(self, pod: Pod, c: Container) -> Image:
        """The container's image, pulled if not present, marked as used by it under the lock
        RemoveImage holds: a removal either ended before (the image is pulled again) or sees
        the container."""
        from init.services.image.errors import ImageNotFound

        async with self.image_use:  # present already (the usual case): one look-up
            with contextlib.suppress(ImageNotFound):
                image = await asyncio.to_thread(self.images.get, c.spec.image)
                c.image_digest = image.digest
                return image
        for _ in range(self.TAKE_ATTEMPTS):
            try:  # the store's files (and, on first use, its locks) are read in a thread
                image = await asyncio.to_thread(self.images.get, c.spec.image)
            except ImageNotFound:
                image = await self._pull_unless_stopped(pod, c)
            async with self.image_use:
                try:
                    await asyncio.to_thread(self.images.get, image.digest)
                except ImageNotFound:
                    continue  # removed meanwhile
                c.image_digest = image.digest
                return image
        raise ImageNotFound(f"removed {self.TAKE_ATTEMPTS} times while the pod was created")

    async def _pull_unless_stopped(self, pod: Pod, c: Container) -> Image:
        """Pull the container's image; a StopPod meanwhile ends the wait (the pull itself goes on
        for whoever else waits, and its blobs are kept), so StopPod never waits for a pull."""
        pull = asyncio.ensure_future(self.images.pull(c.spec.image))
        stopped = asyncio.ensure_future(pod.stopping.wait())
        try:
            await asyncio.wait([pull, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not pull.done():
            pull.cancel()
            raise WrongState(f"pod {pod.id} was stopped while image {c.spec.image} was pulled")
        return pull.result()

    def _exited(self, c: Container, status: int) -> None:
        c.exit_code = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                       else 128 + os.WTERMSIG(status))
        c.signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        c.finished_at_ms = int(time.time() * 1000)
        # The OOM killer's mark is in the cgroup, which lives until the runtime deletes it.
        oom = c.cgroup is not None and cgroups.oom_kills(c.cgroup) > c.oom_kills_at_start
        c.reason = ("OOMKilled" if oom and (c.signal or c.exit_code)
                    else "Killed" if c.signal else "Completed" if c.exit_code == 0 else "Error")
        if c.state != CState.FAILED:
            c.state = CState.STOPPED
        c.exited.set()
        LOG.info("container %s exited (code %d): %s", c.runtime_id, c.exit_code, c.reason)
        if c.reason == "OOMKilled":
            self.events.publish(Event("container_oom_killed", c.pod_id, c.id))
        self.events.publish(Event("container_exited", c.pod_id, c.id, reason=c.reason,
                                  exit_code=c.exit_code))
        pod = self.pods.get(c.pod_id)
        if pod is not None:
            self.events.publish(Event("pod_state", pod.id, state=pod.state.name))

    # --- start / stop / delete ---------------------------------------------------------------

    async def start(self, pod_id: str) -> Pod:
        self._check_open()
        pod = self.get(pod_id)
        async with pod.busy:
            self._check_open()  # the way down may have begun while this waited
            if pod.state != PState.CREATED:
                raise WrongState(f"pod {pod_id} is {pod.state.name}: only a CREATED pod starts")
            pod.started = True
            for c in pod.containers:
                if c.state != CState.CREATED:
                    continue
                try:
                    await self.runtime.start(c.runtime_id)
                except RuntimeError_ as e:
                    c.state, c.reason = CState.FAILED, "StartError"
                    c.error = str(e)
                    pod.error = f"container {c.id}: {e}"
                    break
                if not c.exited.is_set():
                    c.state = CState.RUNNING
                    self.events.publish(Event("container_started", pod.id, c.id))
            if pod.error:
                await self._stop(pod, 0.0, locked=True)
        self.events.publish(Event("pod_state", pod.id, state=pod.state.name))
        from init.system import meminfo

        # The init's own memory with pods running, for whoever sizes the VM.
        LOG.info("pod %s %s; %s", pod_id, pod.state.name, meminfo.summary())
        return pod

    async def stop(self, pod_id: str, grace: float) -> Pod:
        grace = min(grace, MAX_GRACE)
        pod = self.get(pod_id)
        pod.stopping.set()
        await self._stop(pod, grace)
        return pod

    async def _stop(self, pod: Pod, grace: float, *, locked: bool = False) -> None:
        if not locked:
            async with pod.busy:
                return await self._stop(pod, grace, locked=True)
        live = [c for c in pod.containers if c.pid and not c.exited.is_set()]
        if not live:
            return
        for c in live:
            self._signal(c, "TERM" if c.state == CState.RUNNING and grace > 0 else "KILL")
        waits = [asyncio.ensure_future(c.exited.wait()) for c in live]
        pending = await self._wait_until_killed(waits, grace)
        if pending:
            for c in live:
                if not c.exited.is_set():
                    LOG.info("container %s still running at the end of its grace: SIGKILL",
                             c.runtime_id)
                    self._signal(c, "KILL")
            await asyncio.wait(pending)
        pod.started = True

    async def _wait_until_killed(self, waits: Sequence[asyncio.Future[Any]],
                                 grace: float) -> set[asyncio.Future[Any]]:
        """Wait for the exits until `grace` has passed or the way down's kill time (which a
        later Shutdown may move earlier) came; what is still pending then."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace if grace > 0 else None
        pending: set[asyncio.Future[Any]] = set(waits)
        while pending:
            ends = [t for t in (end, self._kill_at) if t is not None]
            timeout = max(min(ends) - loop.time(), 0.0) if ends else None
            if timeout == 0.0:
                break
            moved = asyncio.ensure_future(self._kill_moved.wait())
            try:
                _, pending = await asyncio.wait(pending | {moved}, timeout=timeout,
                                                return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
            pending.discard(moved)
        return pending

    def _signal(self, c: Container, name: str) -> None:
        # Straight to the process (we are its parent): no runtime call that could hang or fail
        # on a container whose runtime state is gone; a pid is only reused after we reap it.
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, signal.Signals[f"SIG{name}"])

    async def usage(self, pod_id: str = "") -> PodUsages:
        """Each pod's containers' usage now (one pod, or every pod)."""
        pods = [self.get(pod_id)] if pod_id else [*self.pods.values()]

        def read() -> PodUsages:
            return [(p, [usage_mod.of(c) for c in p.containers]) for p in pods]

        return await asyncio.to_thread(read)

    async def update(self, pod_id: str, container_id: str, r: Resources) -> Container:
        """A running container's limits, replaced (`docker update`): the runtime writes its
        cgroup; the container keeps running."""
        self._check_open()
        pod = self.get(pod_id)
        c = pod.container(container_id)
        pod_resources.check(r, f"container {c.id}")
        async with pod.busy:
            if c.state != CState.RUNNING:
                raise WrongState(f"container {c.id} is {c.state.name}: only a RUNNING container "
                                 "is updated")
            doc = pod_resources.update_document(r, default_pids_limit=self.default_pids)
            path = c.dir / "resources.json"
            path.write_text(json.dumps(doc))
            try:
                await self.runtime.update(c.runtime_id, path)
            except RuntimeError_ as e:
                raise WrongState(f"update of {c.id}: {e}") from e
            c.resources = r
        LOG.info("container %s updated: %s", c.runtime_id, r)
        return c

    async def exec(self, pod_id: str, container_id: str, command: Sequence[str],
                   env: Sequence[str], *, tty: bool) -> ExecProcess:
        """Start `command` in a RUNNING container; the caller owns (and closes) the process."""
        from init.services.task import exec as task_exec

        self._check_open()
        c = self.get(pod_id).container(container_id)
        if c.state != CState.RUNNING:
            raise WrongState(f"container {c.id} is {c.state.name}: exec needs a RUNNING container")
        if not command:
            raise InvalidPod("exec needs a command")
        ids.check_texts("exec", [*command, *env])
        try:
            return await task_exec.start(self.runtime, c.runtime_id, command, env, tty=tty)
        except RuntimeError_ as e:
            raise WrongState(f"exec in {c.id}: {e}") from e

    async def delete(self, pod_id: str, force: bool) -> None:
        pod = self.get(pod_id)
        if pod.state == PState.RUNNING and not force:
            raise WrongState(f"pod {pod_id} is RUNNING: stop it first or delete with force")
        pod.stopping.set()  # a CreatePod still pulling its image stops waiting for it
        await self._remove(pod)
        LOG.info("pod %s deleted", pod_id)

    async def _remove(self, pod: Pod) -> None:
        await self._stop(pod, 0.0)
        async with pod.busy:
            for c in pod.containers:
                if c.in_runtime:
                    try:
                        await self.runtime.delete(c.runtime_id)
                    except RuntimeError_ as e:
                        LOG.warning("runtime delete %s: %s", c.runtime_id, e)
                if c.dir.exists():
                    await asyncio.to_thread(rootfs.release, c.dir, c.overlay, c.layer)
            await asyncio.to_thread(fstree.remove_logged, pod.dir, LOG)
            self.pods.pop(pod.id, None)
