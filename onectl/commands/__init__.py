"""onectl's subcommands, one small module each.

Each module has `register(subparsers, common)`: it adds its parser (with `common` as a parent, for
the options every data-printing command shares) and sets `handler` to a function
`(args) -> int` returning the exit code.
"""

from __future__ import annotations

from onectl.commands import (
    health,
    images,
    netinfo,
    pod,
    pod_exec,
    pod_logs,
    pull,
    run,
    shutdown,
    stats,
    update,
)

MODULES = (health, netinfo, shutdown, run, pull, images, pod, pod_logs, pod_exec, update, stats)
