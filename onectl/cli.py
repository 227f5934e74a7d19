"""onectl: drive a mvirt-one init from the host (console script `onectl`, or `python -m onectl`).

Global options come before the command: `onectl -a vsock-uds:/run/vm/vm.vsock health -o json`.
Every error is one line on stderr (`onectl: ...`) and an exit code scripts can rely on
(errors.py has the table; `onectl --help` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from onectl import commands
from onectl.commands._common import ADDRESS_ENV, positive_float
from onectl.errors import Exit, OnectlError
from onectl.output import FORMATS
from onectl.settings import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT

EPILOG = """\
addresses:
  vsock-uds:PATH[:PORT]  hybrid vsock socket of a VM (cloud-hypervisor, firecracker,
                         vhost-device-vsock); PORT defaults to 1024
  unix:PATH              an init in local mode on a unix socket
  tcp:HOST:PORT          an init in local mode on TCP

exit codes:
  0  success
  1  the server answered with a gRPC error, a call timed out, or health is false
  2  usage error
  3  cannot reach the server (connect failed, handshake refused, connection lost)
  4  local failure (missing tool, VM did not boot or signal READY)
  130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onectl", description="Talk to a mvirt-one init over hybrid vsock, unix or TCP, "
        "and boot mvirt-one VMs.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-a", "--address", default=os.environ.get(ADDRESS_ENV),
                        help=f"the init's API address (default ${ADDRESS_ENV})")
    parser.add_argument("-o", "--output", choices=FORMATS, default="text",
                        help="output format for data (default text)")
    parser.add_argument("--rpc-timeout", type=positive_float, default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help=f"deadline of one call (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--connect-timeout", type=positive_float,
                        default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                        help="hybrid vsock: keep retrying this long while the guest does not "
                        f"listen yet (default {DEFAULT_CONNECT_TIMEOUT:g})")
    # `-o` is accepted after the command too (`onectl health -o json`); SUPPRESS keeps the global
    # value when the command line does not repeat it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=FORMATS, default=argparse.SUPPRESS,
                        help="output format (text or json)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands.MODULES:
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 for --help
    try:
        return int(args.handler(args))
    except OnectlError as e:
        print(f"onectl: {e}", file=sys.stderr, flush=True)
        return int(e.code)
    except KeyboardInterrupt:
        print("onectl: interrupted", file=sys.stderr)
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`onectl netinfo | head -1`): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)


def run_main(argv: Sequence[str]) -> bool:
    """main() for callers that want success as a boolean (doit's python-actions)."""
    return main(argv) == 0
