"""`onectl exec [-i] [-t] POD CONTAINER -- CMD...`: run a command in a running container.

With -t the local terminal goes raw and its size follows the window (SIGWINCH → ExecResize);
the command's exit code becomes onectl's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from onectl.commands._common import add_command, client
from onectl.errors import UsageError
from oneproto import one_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(sub, common, "exec", handle, help="run a command in a container",
                         description="Call Exec: run CMD in a running container, with its "
                         "stdout and stderr here; -i sends stdin, -t gives it a terminal.")
    parser.add_argument("-i", "--interactive", action="store_true", help="send stdin")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("pod", metavar="POD")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    import termios
    import tty

    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _resize() -> one_pb2.ExecInput:
    size = shutil.get_terminal_size()
    return one_pb2.ExecInput(resize=one_pb2.ExecResize(width=size.columns, height=size.lines))


def handle(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise UsageError("exec needs a command: onectl exec POD CONTAINER -- CMD...")
    inputs: queue.Queue[one_pb2.ExecInput | None] = queue.Queue()
    inputs.put(one_pb2.ExecInput(start=one_pb2.ExecStart(
        pod_id=args.pod, container_id=args.container, command=command, tty=args.tty,
        env=args.env)))
    if args.tty:
        inputs.put(_resize())
        signal.signal(signal.SIGWINCH, lambda *_: inputs.put(_resize()))

    def pump_stdin() -> None:
        fd = sys.stdin.fileno()
        while data := os.read(fd, 4096):
            inputs.put(one_pb2.ExecInput(stdin=data))
        inputs.put(None)  # end of input: the server closes the command's stdin

    def requests() -> Iterator[one_pb2.ExecInput]:
        while (item := inputs.get()) is not None:
            yield item

    if args.interactive:
        threading.Thread(target=pump_stdin, daemon=True).start()
    else:
        inputs.put(None)
    code = 0
    with client(args) as c, raw_terminal(sys.stdin.fileno()) if args.tty else \
            contextlib.nullcontext():
        for m in c.stream(c.stub.Exec, requests(), timeout=None):
            kind = m.WhichOneof("output")
            if kind == "stdout":
                sys.stdout.buffer.write(m.stdout)
                sys.stdout.flush()
            elif kind == "stderr":
                sys.stderr.buffer.write(m.stderr)
                sys.stderr.flush()
            else:
                code = m.exit_code
    return code
