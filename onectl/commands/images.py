"""`onectl images`: the images in the init's store; `onectl rmi REF|DIGEST` removes one."""

from __future__ import annotations

import argparse
from typing import Any

from onectl.commands._common import add_command, show, unary
from onectl.output import print_table
from oneproto import one_pb2

HEADER = ("REFERENCE", "DIGEST", "SIZE", "CREATED")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(sub, common, "images", handle, help="list the pulled images",
                description="Call ListImages: every image in the init's store with its "
                "references, digest, size of its layers and creation time.")
    rmi = add_command(sub, common, "rmi", handle_rmi, help="remove an image reference or image",
                      description="Call RemoveImage. A reference is removed; the image goes "
                      "with its last reference, or at once when named by digest. Refused while "
                      "a container uses it.")
    rmi.add_argument("reference", metavar="REF|DIGEST")


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def rows(reply: one_pb2.ListImagesResponse) -> list[list[str]]:
    out = []
    for image in reply.images:
        digest = image.digest.removeprefix("sha256:")[:12]
        for ref in image.references or ["<none>"]:
            out.append([ref, digest, _size(image.size), image.created])
    return out


def handle(args: argparse.Namespace) -> int:
    reply = unary(args, "ListImages", one_pb2.Empty())
    show(args, reply, lambda: print_table(HEADER, rows(reply)))
    return 0


def handle_rmi(args: argparse.Namespace) -> int:
    reply = unary(args, "RemoveImage", one_pb2.RemoveImageRequest(reference=args.reference))

    def text() -> None:
        for item in reply.removed:
            print(f"removed {item}")

    show(args, reply, text)
    return 0
