"""What the standard library would compile while the init boots, compiled by the build instead.

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

Regular expressions the same way: the modules on the way to READY compile ~40 patterns as they
are imported (logging, json, tokenize, platform, grpclib...), and re's parser and compiler are
Python. The table holds what re's compiler hands the regex engine for a pattern and its flags;
`re._compiler.compile` is replaced until `finish`, and the engine gets the stored program, which
it checks as it does any other. The key names the engine's MAGIC: another engine finds nothing.
This module imports no more than `re` before `install_bundled`, so the patterns that dataclasses
and logging compile as they are imported come from the table too.
"""

from __future__ import annotations

import _sre
import builtins
import importlib
import marshal
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

TABLE_NAME = "precompiled.marshal"
# Module -> the builtin it calls on generated source text, and the compile mode that needs.
# By name: importing dataclasses here would compile its patterns before the table is installed.
SHADOWED: tuple[tuple[str, str], ...] = (("dataclasses", "exec"), ("collections", "eval"))
# A regex entry's mode: the engine's program format, then the flags the pattern was compiled with.
REGEX_MODE = f"re{_sre.MAGIC}/"
# re's own compiler, which `install` replaces (re._compile calls it by this module attribute).
_COMPILE_REGEX = re._compiler.compile  # type: ignore[attr-defined]

# What the shadowed `exec`/`eval` run for a text: (mode, source) -> its code
CodeFor = Callable[[str, str], CodeType]
# What the engine is given for a pattern and its flags: RegexParts
RegexParts = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]
RegexFor = Callable[[str | bytes, int], RegexParts]


def compile_text(mode: str, source: str) -> CodeType:
    """What `exec`/`eval` compile from `source` when dataclasses or collections call them: those
    modules have no __future__ imports, so none may leak in from the module compiling it."""
    return compile(source, "<string>", mode, dont_inherit=True)


def regex_parts(pattern: str | bytes, flags: int) -> RegexParts:
    """What `re._compiler.compile(pattern, flags)` passes `_sre.compile` after the pattern:
    the flags with those set inside the pattern, the engine's program, the number of groups,
    and the group names both ways."""
    parsed = re._parser.parse(pattern, flags)  # type: ignore[attr-defined]
    # Plain ints: some are re's named opcode constants, which marshal cannot store.
    code = [int(op) for op in re._compiler._code(parsed, flags)]  # type: ignore[attr-defined]
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, i in groupindex.items():
        indexgroup[i] = name
    return (int(flags | parsed.state.flags), code, parsed.state.groups - 1, groupindex,
            tuple(indexgroup))


def regex_text(pattern: str | bytes) -> bytes:
    """A pattern as a table key: str and bytes patterns of the same characters differ."""
    if isinstance(pattern, bytes):
        return b"b" + pattern
    return b"s" + pattern.encode("utf-8", "surrogatepass")


def _entry(mode: str, source: str | bytes) -> tuple[bytes, bytes]:
    """(key text, marshalled value) of a table entry, made here."""
    if mode.startswith(REGEX_MODE):
        return regex_text(source), marshal.dumps(regex_parts(source, int(mode[len(REGEX_MODE):])))
    if not isinstance(source, str):
        raise TypeError(f"{mode} entries are source text, not {type(source).__name__}")
    return source.encode(), marshal.dumps(compile_text(mode, source))


class Table:
    """The texts and patterns with their marshalled code or engine program in one bytes object,
    found by a CRC-32 of mode and text, and each text compared before its value is used. One
    object rather than one per entry: freed after the boot, small objects would leave holes
    among the ones that stay, and the allocator could not give their pages back."""

    def __init__(self, index: dict[int, int], data: bytes, regexes: int = 0) -> None:
        self._index = index
        self._data = memoryview(data)
        self.regexes = regexes  # how many of the entries are patterns

    @staticmethod
    def _key(mode: str, text: bytes) -> int:
        return zlib.crc32(text, zlib.crc32(mode.encode()))

    def __len__(self) -> int:
        return len(self._index)

    def _value(self, mode: str, text: bytes) -> object:
        """The entry's unmarshalled value, or None: no entry for exactly this text, or damaged
        (what it stands for is then compiled instead)."""
        at = self._index.get(self._key(mode, text))
        if at is None:
            return None
        text_end = at + 8 + int.from_bytes(self._data[at:at + 4], "little")
        value_end = text_end + int.from_bytes(self._data[at + 4:at + 8], "little")
        if self._data[at + 8:text_end] != text:
            return None
        try:
            return marshal.loads(self._data[text_end:value_end])
        except (ValueError, EOFError, TypeError):
            return None

    def code(self, mode: str, source: str) -> CodeType | None:
        code = self._value(mode, source.encode())
        return code if isinstance(code, CodeType) else None

    def regex(self, pattern: str | bytes, flags: int) -> RegexParts | None:
        parts = self._value(f"{REGEX_MODE}{int(flags)}", regex_text(pattern))
        if (isinstance(parts, tuple) and len(parts) == 5 and isinstance(parts[0], int)
                and isinstance(parts[1], list) and isinstance(parts[2], int)
                and isinstance(parts[3], dict) and isinstance(parts[4], tuple)):
            return parts
        return None

    @classmethod
    def pack(cls, entries: Iterable[tuple[str, str | bytes]]) -> bytes:
        """The table of (mode, text) entries, each compiled here, as the file holds it."""
        index: dict[int, int] = {}
        data = bytearray()
        regexes = 0
        for mode, source in entries:
            regexes += mode.startswith(REGEX_MODE)
            text, value = _entry(mode, source)
            key = cls._key(mode, text)
            if key in index:
                raise ValueError(f"two texts share the key {key:#x}: {source!r}")
            index[key] = len(data)
            data += len(text).to_bytes(4, "little") + len(value).to_bytes(4, "little")
            data += text + value
        # Compressed: the file is read whole at every boot, and its pages stay in the page cache.
        return zlib.compress(marshal.dumps((index, bytes(data), regexes)), 9)

    @classmethod
    def unpack(cls, raw: bytes) -> Table:
        index, data, regexes = marshal.loads(zlib.decompress(raw))
        if not (isinstance(index, dict) and isinstance(data, bytes) and isinstance(regexes, int)):
            raise ValueError("not a precompiled-code table")
        return cls(index, data, regexes)


class Counts:
    """How many texts and patterns the boot found compiled (used) and had to compile (missed)."""

    def __init__(self) -> None:
        self.used = 0
        self.missed: list[str] = []  # the line naming what each was for
        self.regexes_used = 0
        self.regexes_missed: list[str | bytes] = []


COUNTS = Counts()


def shadow(code_for: CodeFor, regex_for: RegexFor) -> None:
    """Make the shadowed modules' `exec`/`eval` run `code_for`'s code for a source text (what
    they are given otherwise goes to the builtin as is), and re compile a pattern from what
    `regex_for` gives for it. re's first: importing dataclasses compiles patterns."""

    def compile_regex(pattern: Any, flags: int = 0) -> re.Pattern[Any]:
        if isinstance(pattern, (str, bytes)) and not flags & re.DEBUG:
            return _sre.compile(pattern, *regex_for(pattern, int(flags)))  # type: ignore[no-any-return]
        return _COMPILE_REGEX(pattern, flags)  # type: ignore[no-any-return]

    re._compiler.compile = compile_regex  # type: ignore[attr-defined]
    for module_name, name in SHADOWED:
        builtin = getattr(builtins, name)

        def call(source: Any, *rest: Any, _mode: str = name,
                 _builtin: Callable[..., Any] = builtin) -> Any:
            if isinstance(source, str):
                source = code_for(_mode, source)
            return _builtin(source, *rest)

        setattr(importlib.import_module(module_name), name, call)


def shadowed() -> bool:
    if re._compiler.compile is not _COMPILE_REGEX:  # type: ignore[attr-defined]
        return True
    return any(name in vars(sys.modules[module_name])
               for module_name, name in SHADOWED if module_name in sys.modules)


def unshadow() -> None:
    re._compiler.compile = _COMPILE_REGEX  # type: ignore[attr-defined]
    for module_name, name in SHADOWED:
        module = sys.modules.get(module_name)
        if module is not None:
            module.__dict__.pop(name, None)


def install(table: Table) -> None:
    def code_for(mode: str, source: str) -> CodeType:
        code = table.code(mode, source)
        if code is None:
            COUNTS.missed.append(source.strip().splitlines()[-2 if mode == "exec" else 0])
            return compile_text(mode, source)
        COUNTS.used += 1
        return code

    def regex_for(pattern: str | bytes, flags: int) -> RegexParts:
        parts = table.regex(pattern, flags)
        if parts is None:
            COUNTS.regexes_missed.append(pattern)
            return regex_parts(pattern, flags)
        COUNTS.regexes_used += 1
        return parts

    shadow(code_for, regex_for)


def install_bundled() -> None:
    """In the frozen init, install the table the build put beside it; elsewhere do nothing."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return
    try:
        with open(os.path.join(bundle, TABLE_NAME), "rb") as f:
            table = Table.unpack(f.read())
    except (OSError, ValueError, EOFError, TypeError, zlib.error) as e:
        # Only slower without it: the modules compile their texts as they always do.
        print(f"mvirt-one: precompiled code not loaded: {e}", file=sys.stderr)
        return
    install(table)


def finish() -> None:
    """The boot is over: drop the table (the code and patterns in use stay with their users)."""
    if shadowed():
        import logging

        logging.getLogger("mvirt-one").debug(
            "precompiled code: %d texts found, %d compiled at run time%s; "
            "regular expressions: %d found, %d compiled at run time%s",
            COUNTS.used, len(COUNTS.missed), "".join(f"\n  {t}" for t in COUNTS.missed),
            COUNTS.regexes_used, len(COUNTS.regexes_missed),
            "".join(f"\n  {p!r:.100}" for p in COUNTS.regexes_missed))
        unshadow()
