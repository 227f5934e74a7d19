"""Code the standard library would compile while the init boots, compiled by the build instead.

dataclasses writes each method it adds to a class (__init__, __repr__, __eq__, __setattr__...) as
source text and compiles it when the class is made; namedtuple does the same for __new__. Under
TCG the ~40 dataclasses made on the way to READY took ~250 ms, half of it in the compiler; with
this, READY came ~0.3 s sooner (direct boots, median of 7, interleaved). The build
(onebuild/precompile.py) imports what the frozen init imports, records each such text and stores
it with its compiled code in TABLE_NAME, next to the frozen init; `install_bundled` makes those
two modules run the stored code for a text that has it and compile any other as before. Once the
init serves, `finish` lets the table go: what later imports make is compiled as usual.

A stored code object is what the same interpreter compiles from exactly that text, so the classes
come out the same. Only the names `exec` in dataclasses and `eval` in collections are shadowed,
in those modules' globals: nothing else sees a difference.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import logging
import marshal
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

LOG = logging.getLogger("mvirt-one")

TABLE_NAME = "precompiled.marshal"
# Module -> the builtin it calls on generated source text, and the compile mode that needs.
SHADOWED: tuple[tuple[ModuleType, str], ...] = ((dataclasses, "exec"), (collections, "eval"))

# What the shadowed `exec`/`eval` run for a text: (mode, source) -> its code
CodeFor = Callable[[str, str], CodeType]


def compile_text(mode: str, source: str) -> CodeType:
    """What `exec`/`eval` compile from `source` when dataclasses or collections call them: those
    modules have no __future__ imports, so none may leak in from the module compiling it."""
    return compile(source, "<string>", mode, dont_inherit=True)


class Table:
    """The texts and their marshalled code in one bytes object, found by a CRC-32 of mode and
    text, and each text compared before its code is used. One object rather than one per entry:
    freed after the boot, small objects would leave holes among the ones that stay, and the
    allocator could not give their pages back."""

    def __init__(self, index: dict[int, int], data: bytes) -> None:
        self._index = index
        self._data = memoryview(data)

    @staticmethod
    def _key(mode: str, text: bytes) -> int:
        return zlib.crc32(text, zlib.crc32(mode.encode()))

    def __len__(self) -> int:
        return len(self._index)

    def code(self, mode: str, source: str) -> CodeType | None:
        text = source.encode()
        at = self._index.get(self._key(mode, text))
        if at is None:
            return None
        text_end = at + 8 + int.from_bytes(self._data[at:at + 4], "little")
        code_end = text_end + int.from_bytes(self._data[at + 4:at + 8], "little")
        if self._data[at + 8:text_end] != text:
            return None
        try:
            code = marshal.loads(self._data[text_end:code_end])
        except (ValueError, EOFError, TypeError):
            return None  # a damaged entry: the text is compiled instead
        return code if isinstance(code, CodeType) else None

    @classmethod
    def pack(cls, entries: Iterable[tuple[str, str]]) -> bytes:
        """The table of (mode, text) entries, each compiled here, as the file holds it."""
        index: dict[int, int] = {}
        data = bytearray()
        for mode, source in entries:
            text = source.encode()
            key = cls._key(mode, text)
            if key in index:
                raise ValueError(f"two texts share the key {key:#x}: {source!r}")
            code = marshal.dumps(compile_text(mode, source))
            index[key] = len(data)
            data += len(text).to_bytes(4, "little") + len(code).to_bytes(4, "little")
            data += text + code
        # Compressed: the file is read whole at every boot, and its pages stay in the page cache.
        return zlib.compress(marshal.dumps((index, bytes(data))), 9)

    @classmethod
    def unpack(cls, raw: bytes) -> Table:
        index, data = marshal.loads(zlib.decompress(raw))
        if not isinstance(index, dict) or not isinstance(data, bytes):
            raise ValueError("not a precompiled-code table")
        return cls(index, data)


class Counts:
    """How many texts the boot found compiled (used) and had to compile (missed)."""

    def __init__(self) -> None:
        self.used = 0
        self.missed: list[str] = []  # the line naming what each was for


COUNTS = Counts()


def shadow(code_for: CodeFor) -> None:
    """Make the shadowed modules' `exec`/`eval` run `code_for`'s code for a source text (what
    they are given otherwise goes to the builtin as is)."""
    for module, name in SHADOWED:
        builtin = getattr(builtins, name)

        def call(source: Any, *rest: Any, _mode: str = name,
                 _builtin: Callable[..., Any] = builtin) -> Any:
            if isinstance(source, str):
                source = code_for(_mode, source)
            return _builtin(source, *rest)

        setattr(module, name, call)


def shadowed() -> bool:
    return any(name in vars(module) for module, name in SHADOWED)


def unshadow() -> None:
    for module, name in SHADOWED:
        module.__dict__.pop(name, None)


def install(table: Table) -> None:
    def code_for(mode: str, source: str) -> CodeType:
        code = table.code(mode, source)
        if code is None:
            COUNTS.missed.append(source.strip().splitlines()[-2 if mode == "exec" else 0])
            return compile_text(mode, source)
        COUNTS.used += 1
        return code

    shadow(code_for)


def install_bundled() -> None:
    """In the frozen init, install the table the build put beside it; elsewhere do nothing."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return
    try:
        table = Table.unpack((Path(bundle) / TABLE_NAME).read_bytes())
    except (OSError, ValueError, EOFError, TypeError, zlib.error) as e:
        # Only slower without it: the modules compile their texts as they always do.
        print(f"mvirt-one: precompiled code not loaded: {e}", file=sys.stderr)
        return
    install(table)


def finish() -> None:
    """The boot is over: drop the table (the code in use stays with its functions)."""
    if shadowed():
        LOG.debug("precompiled code: %d texts found, %d compiled at run time%s",
                  COUNTS.used, len(COUNTS.missed), "".join(f"\n  {t}" for t in COUNTS.missed))
        unshadow()
