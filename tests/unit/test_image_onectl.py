"""`onectl pull`'s progress display and `onectl images`' table, without a server."""

from __future__ import annotations

import io

from onectl.commands import images
from onectl.commands.pull import ProgressView
from oneproto import one_pb2

LAYER = "sha256:" + "ab" * 32


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress(status: str, done: int = 0, total: int = 0) -> one_pb2.PullImageProgress:
    return one_pb2.PullImageProgress(status=status, layer=LAYER, bytes_done=done,
                                     bytes_total=total)


STEPS = [progress("resolving"), progress("downloading", 0, 4 << 20),
         progress("downloading", 2 << 20, 4 << 20), progress("downloading", 4 << 20, 4 << 20),
         progress("downloaded", 4 << 20, 4 << 20), progress("extracting"),
         progress("extracted"), one_pb2.PullImageProgress(status="done")]


def test_log_output_is_one_line_per_step() -> None:
    out = io.StringIO()
    view = ProgressView(out)
    for p in STEPS:
        view.show(p)
    assert out.getvalue().splitlines() == [
        "abababababab: downloading 4.0 MiB", "abababababab: downloaded",
        "abababababab: extracting", "abababababab: extracted"]
    assert "\r" not in out.getvalue()


def test_terminal_output_redraws_a_bar() -> None:
    out = Tty()
    view = ProgressView(out)
    for p in STEPS:
        view.show(p)
    text = out.getvalue()
    assert "\rabababababab: [===============>              ] 2.0/4.0 MiB" in text
    assert "\rabababababab: [==============================] 4.0/4.0 MiB" in text
    assert text.endswith("\r\033[Kabababababab: downloaded\nabababababab: extracting\n"
                         "abababababab: extracted\n")


def test_images_table_rows() -> None:
    reply = one_pb2.ListImagesResponse(images=[
        one_pb2.ImageInfo(references=["r/a:1", "r/a:2"], digest=LAYER, size=3 << 20,
                          created="2026-01-01T00:00:00Z"),
        one_pb2.ImageInfo(digest="sha256:" + "cd" * 32, size=2048)])
    assert images.rows(reply) == [
        ["r/a:1", "abababababab", "3.0 MiB", "2026-01-01T00:00:00Z"],
        ["r/a:2", "abababababab", "3.0 MiB", "2026-01-01T00:00:00Z"],
        ["<none>", "cdcdcdcdcdcd", "2.0 KiB", ""]]
