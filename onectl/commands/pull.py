"""`onectl pull REF`: have the init pull an image, with a progress bar per layer."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, ClassVar, TextIO

from onectl.commands._common import add_command, client, positive_float, wants_json
from onectl.output import message_dict, print_fields, print_json
from oneproto import one_pb2

DEFAULT_PULL_TIMEOUT = 3600.0  # a large image over a slow link; the per-call default is 30 s
PASSWORD_ENV = "ONECTL_REGISTRY_PASSWORD"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub, common, "pull", handle, help="pull an image into the init's store",
        description="Call PullImage: the init pulls REF from its registry (HTTPS; plain HTTP "
        "for loopback and insecure registries), verifies and unpacks it. A second pull of the "
        "same image transfers nothing.")
    parser.add_argument("reference", metavar="REF",
                        help="image reference, e.g. docker.io/library/alpine:latest or "
                        "10.0.2.2:5000/app@sha256:...")
    parser.add_argument("--user", metavar="NAME",
                        help="registry user for this pull; the password is read from "
                        f"${PASSWORD_ENV} or asked for (never an argument)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_PULL_TIMEOUT,
                        metavar="SECONDS",
                        help=f"deadline of the whole pull (default {DEFAULT_PULL_TIMEOUT:g})")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only the result")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


class ProgressView:
    """One line per layer and step. On a terminal a download is a bar redrawn in place; in a log
    (not a terminal) each step is one plain line."""

    WIDTH = 30
    WORDS: ClassVar[dict[str, str]] = {"downloading": "downloading", "exists": "already present",
                                       "downloaded": "downloaded", "extracting": "extracting",
                                       "extracted": "extracted"}

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last: tuple[str, str] | None = None
        self.drawing = False

    def show(self, p: one_pb2.PullImageProgress) -> None:
        layer = p.layer.removeprefix("sha256:")[:12]
        if p.status in ("resolving", "done") or not layer:
            return
        if p.status == "downloading" and self.tty and p.bytes_total:
            filled = min(self.WIDTH, self.WIDTH * p.bytes_done // p.bytes_total)
            bar = ("=" * filled + ">").ljust(self.WIDTH + 1)[:self.WIDTH]
            self.out.write(f"\r{layer}: [{bar}] {_mib(p.bytes_done)}/{_mib(p.bytes_total)} MiB")
            self.out.flush()
            self.drawing = True
            return
        if (layer, p.status) == self.last:
            return
        self.last = (layer, p.status)
        text = f"{layer}: {self.WORDS.get(p.status, p.status)}"
        if p.status == "downloading":
            text += f" {_mib(p.bytes_total)} MiB"
        if self.drawing:
            self.out.write("\r\033[K")
            self.drawing = False
        self.out.write(text + "\n")
        self.out.flush()


def _request(args: argparse.Namespace) -> one_pb2.PullImageRequest:
    request = one_pb2.PullImageRequest(reference=args.reference)
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ")
        request.username, request.password = args.user, password
    return request


def handle(args: argparse.Namespace) -> int:
    view = None if args.quiet or wants_json(args) else ProgressView(sys.stderr)
    final: one_pb2.PullImageProgress | None = None
    with client(args) as c:
        for progress in c.stream(c.stub.PullImage, _request(args), timeout=args.timeout):
            if view is not None:
                view.show(progress)
            if progress.status == "done":
                final = progress
    if final is None:
        from onectl.errors import Exit, OnectlError

        raise OnectlError("the init ended the pull without a result", Exit.SERVER_ERROR)
    image = final.image
    if wants_json(args):
        print_json(message_dict(image))
    else:
        print_fields([("image", ", ".join(image.references) or args.reference),
                      ("digest", image.digest), ("size", f"{_mib(image.size)} MiB")])
    return 0
