"""The init's life: boot phases, the main loop, and the way down.

The same `Init` serves both modes. PID 1 mode adds what only PID 1 may do (mounts, console,
hostname, power-off); local mode is a child subreaper that leaves the host alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

from init import config as config_mod
from init import hooks, log
from init.config import Config
from init.system import cgroups, console, libc, mounts, power, power_button
from init.system.reaper import Reaper
from init.version import VERSION

LOG = logging.getLogger("mvirt-one")

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGPWR)


class Init:
    """Wires the services together and runs until a shutdown is requested."""

    def __init__(self, cfg: Config, reaper: Reaper) -> None:
        self.cfg = cfg
        self.reaper = reaper
        self._shutdown = asyncio.Event()
        self.shutdown_reason = ""
        self._background: set[asyncio.Task[None]] = set()

    def request_shutdown(self, reason: str) -> None:
        if not self._shutdown.is_set():
            LOG.info("shutdown requested (%s)", reason)
            self.shutdown_reason = reason
            self._shutdown.set()

    def _start(self, coro: object, name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        self.reaper.install(loop)
        for sig in SHUTDOWN_SIGNALS:
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
        if self.cfg.mode == "pid1":
            with log.phase("network"):
                await _loopback_up()
            button = await power_button.PowerButton.subscribe()
            if button is not None:
                self._start(button.watch(self.request_shutdown), "power-button")
        with log.phase("hooks"):
            await hooks.run_all(self.cfg.hooks_dir, self.reaper)
        LOG.info("phase ready: init %s serving (%s)", VERSION, self.cfg.listen)
        await self._shutdown.wait()
        for task in list(self._background):
            task.cancel()


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
            _system_setup(cfg)
        asyncio.run(Init(cfg, reaper).serve())
    except BaseException:
        LOG.exception("fatal error in PID 1: powering off")
    power.power_off(reaper, grace_seconds=cfg.shutdown_grace if cfg else 5.0)


def _system_setup(cfg: Config) -> None:
    try:
        socket.sethostname(cfg.hostname)
    except OSError as e:
        LOG.error("hostname: %s", e)
    controllers = cgroups.enable_controllers()
    LOG.info("cgroup controllers: %s", " ".join(controllers) or "none")
    try:
        # Ctrl-Alt-Del then sends SIGINT to PID 1 instead of an immediate reboot.
        libc.reboot(libc.RB_DISABLE_CAD)
    except OSError as e:
        LOG.warning("cannot take over Ctrl-Alt-Del: %s", e)
    os.makedirs(cfg.data_dir, exist_ok=True)


def run_local(cfg: Config) -> int:
    """Local mode: a subreaper serving on a unix socket or TCP until SIGTERM/SIGINT."""
    log.setup(cfg.log_level)
    libc.set_child_subreaper()
    os.makedirs(cfg.data_dir, exist_ok=True)
    LOG.info("init %s starting in local mode (pid %d)", VERSION, os.getpid())
    reaper = Reaper()
    asyncio.run(Init(cfg, reaper).serve())
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
