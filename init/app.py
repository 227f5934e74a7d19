"""The init's life: boot phases, the main loop, and the way down.

The same `Init` serves both modes. PID 1 mode adds what only PID 1 may do (mounts, console,
hostname, power-off); local mode is a child subreaper that leaves the host alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from init import config as config_mod
from init import hooks, log, openssl, precompiled
from init.api.listeners import ListenError
from init.api.server import ApiServer
from init.config import Config
from init.services.events import Events
from init.system import (
    cgroups,
    console,
    fdlimit,
    libc,
    meminfo,
    mounts,
    power,
    power_button,
    spawn,
)
from init.system.reaper import Reaper
from init.version import VERSION

if TYPE_CHECKING:
    from init.net.manager import NetworkManager
    from init.services.image import ImageService
    from init.services.pod.service import PodService

LOG = logging.getLogger("mvirt-one")

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGPWR)


class ApiUnavailable(RuntimeError):
    """Local mode cannot serve its API: without it the process is of no use to anyone."""


class Init:
    """Wires the services together and runs until a shutdown is requested."""

    # Seconds the pod service gets beyond the grace period to report everything stopped.
    STOP_MARGIN = 5.0

    def __init__(self, cfg: Config, reaper: Reaper, pods: PodService | None = None, *,
                 cgroup_tree: cgroups.Tree | None = None) -> None:
        """`pods`: a pod service to use instead of the one built once the network is up;
        `cgroup_tree`: the pods' cgroup (PID 1 mode)."""
        self.cgroup_tree = cgroup_tree
        self.cfg = cfg
        self.reaper = reaper
        self.pods = pods
        self._shutdown = asyncio.Event()
        self.shutdown_reason = ""
        # Seconds containers (and, in PID 1 mode, every other process) get between SIGTERM and
        # SIGKILL; a Shutdown call may set its own.
        self.shutdown_grace = cfg.shutdown_grace
        self._background: set[asyncio.Task[Any]] = set()
        self._api: ApiServer | None = None
        self.network: NetworkManager | None = None  # PID 1 mode only
        self.events = Events()
        self.images = _image_service(cfg, self.events)

    def _pod_service(self) -> PodService:
        from init.services.pod.service import PodService

        if self.network is not None:
            address = self.network.pod_address
        else:
            from init.net import netinfo

            address = netinfo.first_ipv4
        return PodService(self.cfg.data_dir, self.cfg.runtime, self.reaper, self.images,
                          address=address, default_grace=self.cfg.shutdown_grace,
                          cgroup_tree=self.cgroup_tree, events=self.events,
                          log_max_bytes=max(self.cfg.log_max_size, 4096),
                          log_max_files=max(self.cfg.log_max_files, 1),
                          own_writable_space=self.cfg.mode == "pid1")

    def request_shutdown(self, reason: str, grace_seconds: float | None = None) -> None:
        """Begin the way down (new work is refused from now on); asked again with a shorter
        grace, the containers being stopped get the shorter one. Grace is capped at MAX_GRACE."""
        from init.services.pod.service import MAX_GRACE

        if grace_seconds is not None and grace_seconds > MAX_GRACE:
            LOG.warning("shutdown grace %.0f s capped at %.0f s", grace_seconds, MAX_GRACE)
            grace_seconds = MAX_GRACE
        if self.pods is not None:
            self.pods.close()
        if not self._shutdown.is_set():
            LOG.info("shutdown requested (%s)", reason)
            self.shutdown_reason = reason
            if grace_seconds is not None:
                self.shutdown_grace = grace_seconds
            self._shutdown.set()
        elif grace_seconds is not None and grace_seconds < self.shutdown_grace:
            LOG.info("shutdown requested again (%s): grace %.0f s instead of %.0f s", reason,
                     grace_seconds, self.shutdown_grace)
            self.shutdown_grace = grace_seconds
            if self.pods is not None:
                self.pods.hurry(grace_seconds)

    def _start(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        # Logged at once (not when the task is garbage-collected), and never fatal.
        if not task.cancelled() and task.exception() is not None:
            LOG.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        self.reaper.install(loop)
        for sig in SHUTDOWN_SIGNALS:
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
        # Nothing serves until the API does, so nothing before it can need TLS: its imports
        # (hashlib, say, reached by the DHCP client) go without OpenSSL (init/openssl.py).
        with openssl.hidden():
            await self._boot()
        with log.phase("api"):
            await self._start_api()
        precompiled.finish()
        # What the boot built lives as long as the init: out of the collector's way for good.
        gc.freeze()
        gc.enable()
        libc.release_free_heap()  # what the boot imports freed
        LOG.info("phase ready: init %s serving (%s); %s", VERSION,
                 self._api.address if self._api else "no API", meminfo.summary())
        if self._api is not None and self.cfg.mode == "pid1":
            from init.api import ready

            # In the background: a host that does not listen must not delay anything.
            self._start(ready.signal_ready(self.cfg.ready_port), "ready")
        await self._shutdown.wait()
        await self._stop()

    async def _boot(self) -> None:
        """Everything before the API: storage, network and power button (PID 1 mode), the pod
        service, the boot hooks."""
        if self.cfg.mode == "pid1":
            with log.phase("storage"):
                from init.system import datadisk

                where = await datadisk.prepare(self.cfg.data_dir, self.cfg.data_disk,
                                               self.cfg.data_size, self.reaper)
            LOG.info("data directory %s on %s", self.cfg.data_dir, where)
            with log.phase("network"):
                await _loopback_up()
                from init.net import boot as net_boot

                self.network = await net_boot.start(self.cfg)
            await net_boot.log_state(self.network)
            button = await power_button.PowerButton.subscribe()
            if button is not None:
                self._start(button.watch(self.request_shutdown), "power-button")
        if self.pods is None:
            self.pods = self._pod_service()
            try:
                await self.pods.clean_leftovers()
            except Exception as e:
                LOG.error("pods left by an earlier init: %s", e)
        with log.phase("hooks"):
            await hooks.run_all(self.cfg.hooks_dir, self.reaper)

    async def _start_api(self) -> None:
        try:
            self._api = await ApiServer.start(
                self.cfg.listen, version=VERSION, pods=self.pods,
                request_shutdown=self.request_shutdown, default_grace=self.cfg.shutdown_grace,
                network=self.network.interfaces if self.network is not None else None,
                images=self.images)
        except (ListenError, ImportError) as e:
            if self.cfg.mode == "local":
                raise ApiUnavailable(str(e)) from e
            # PID 1 stays up without its API: the console shows why, the power button works.
            LOG.error("API not started: %s", e)

    async def _stop(self) -> None:
        """Containers first (the API still answers meanwhile), then the API, then the rest."""
        grace = self.shutdown_grace
        # Pulls first: a pull in flight must not hold a CreatePod, nor (as an executor thread
        # asyncio.run waits for) the exit.
        self.images.cancel_all()
        try:
            # Bounded: a pod service that hangs must not keep the VM from powering off.
            if self.pods is not None:
                await asyncio.wait_for(self.pods.stop_all(grace), grace + self.STOP_MARGIN)
        except TimeoutError:
            LOG.error("pods still stopping %.1f s after the grace period: going on",
                      self.STOP_MARGIN)
        except Exception:
            LOG.exception("stopping pods failed")
        if self._api is not None:
            await self._api.stop()
        if self.network is not None:
            try:  # RELEASE the leases; bounded, a silent server must not hold the power-off
                await asyncio.wait_for(self.network.stop(), 5.0)
            except Exception as e:
                LOG.error("network stop: %r", e)
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=2.0)


def _image_service(cfg: Config, events: Events) -> ImageService:
    """The image service on the data directory; its store and the credentials file are read
    on first use, so an init that never pulls pays (almost) nothing for it."""
    from init.services.image.service import ImageService

    return ImageService(cfg.data_dir, cfg.insecure_registries,
                        credentials_file=cfg.registry_auth, ca_files=cfg.ca_files,
                        max_pulls=max(cfg.max_pulls, 1), events=events)


async def _loopback_up() -> None:
    from init.net import loopback

    try:
        await loopback.bring_up()
    except Exception as e:
        LOG.error("loopback: %s", e)


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    # A failing callback or task is one failure, never the end of the init.
    exc = context.get("exception")
    LOG.error("internal error: %s", context.get("message"),
              exc_info=exc if isinstance(exc, BaseException) else None)


def _ensure_stdio() -> None:
    """The kernel gives /init no fds if /dev/console is missing: give it one, or /dev/null."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            for path in ("/dev/console", "/dev/null"):
                try:
                    opened = os.open(path, os.O_RDWR | os.O_NOCTTY)
                    break
                except OSError:
                    continue
            else:
                return
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def _pid1_config() -> Config:
    try:
        with open("/proc/cmdline") as f:
            text = f.read()
    except OSError as e:
        LOG.error("cannot read /proc/cmdline (%s): using defaults", e)
        text = ""
    try:
        cfg = config_mod.from_cmdline(text)
    except config_mod.ConfigError as e:
        LOG.error("kernel command line: %s; using defaults", e)
        cfg = config_mod.from_cmdline("")
    for key in cfg.unknown:
        LOG.warning("unknown setting one.%s ignored", key)
    return cfg


def run_pid1() -> None:
    """PID 1: bring the system up, serve, and power off. Never returns, never raises."""
    reaper = Reaper()
    cfg: Config | None = None
    init: Init | None = None
    try:
        _ensure_stdio()
        log.setup()
        LOG.info("init %s starting as PID 1", VERSION)
        with log.phase("mounts"):
            mounts.mount_all()
        with log.phase("console"):
            where = console.attach()
            log.setup()  # the handler must write to the new stderr
        LOG.info("console on %s", where or "nothing")
        cfg = _pid1_config()
        log.setup(cfg.log_level)
        with log.phase("system"):
            tree = _system_setup(cfg)
        init = Init(cfg, reaper, cgroup_tree=tree)
        asyncio.run(init.serve())
    except BaseException:
        LOG.exception("fatal error in PID 1: powering off")
    # A Shutdown call's grace period also applies to whatever else still runs.
    grace = init.shutdown_grace if init else cfg.shutdown_grace if cfg else 5.0
    power.power_off(reaper, grace_seconds=grace)


def _system_setup(cfg: Config) -> cgroups.Tree | None:
    LOG.info("open files: up to %d", fdlimit.raise_limit()[0])
    try:
        socket.sethostname(cfg.hostname)
    except OSError as e:
        LOG.error("hostname: %s", e)
    try:
        # Out of memory, the kernel takes a container's process, never PID 1 (its death would
        # panic the VM, taking every container with it).
        spawn.protect_from_oom()
    except OSError as e:
        LOG.error("oom_score_adj: %s", e)
    total = (meminfo.total_kib() or 0) * 1024
    tree = cgroups.setup(total, cfg.memory_reserve, cfg.pids_reserve)
    if tree is not None:
        LOG.info("cgroups: pods may use %s MiB and %s threads; the init keeps the rest",
                 "?" if tree.memory_max is None else tree.memory_max >> 20,
                 "?" if tree.pids_max is None else tree.pids_max)
    try:
        if meminfo.set_reporting_order():
            LOG.info("free page reporting: blocks of %d KiB",
                     (4 << meminfo.REPORTING_ORDER))
    except OSError as e:
        LOG.error("free page reporting order: %s", e)
    try:
        # Ctrl-Alt-Del then sends SIGINT to PID 1 instead of an immediate reboot.
        libc.reboot(libc.RB_DISABLE_CAD)
    except OSError as e:
        LOG.warning("cannot take over Ctrl-Alt-Del: %s", e)
    os.makedirs(cfg.data_dir, exist_ok=True)
    return tree


def _own_data_dir(path: Path) -> None:
    """The data directory is the init's alone, 0700 as Docker's: images keep set-uid files,
    file capabilities and device nodes, which no other user of the host may reach."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def run_local(cfg: Config) -> int:
    """Local mode: a subreaper serving on a unix socket or TCP until SIGTERM/SIGINT."""
    log.setup(cfg.log_level)
    libc.set_child_subreaper()
    _own_data_dir(cfg.data_dir)
    LOG.info("init %s starting in local mode (pid %d)", VERSION, os.getpid())
    LOG.info("open files: up to %d", fdlimit.raise_limit()[0])
    reaper = Reaper()
    try:
        asyncio.run(Init(cfg, reaper).serve())
    except ApiUnavailable as e:
        LOG.error("%s", e)
        return 1
    LOG.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    if os.getpid() == 1:
        run_pid1()  # never returns
    args = config_mod.local_parser().parse_args(argv)
    if args.version:
        print(VERSION)
        return 0
    try:
        cfg = config_mod.from_args(args)
    except config_mod.ConfigError as e:
        print(f"mvirt-one-init: {e}", file=sys.stderr)
        return 2
    return run_local(cfg)
