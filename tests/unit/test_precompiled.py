"""The build's precompiled code for what dataclasses and namedtuple generate, and its compiled
regular expressions (init/precompiled.py): the classes and patterns made from it are the ones the
compilers make, a text or pattern it lacks is compiled as before, and a text is never given
another text's code."""

from __future__ import annotations

import _sre
import dataclasses
import marshal
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from init import precompiled
from onebuild import precompile
from tests.fixtures import precompiled_classes

FIXTURE = "tests.fixtures.precompiled_classes"


@pytest.fixture
def table(tmp_path: Path) -> precompiled.Table:
    out = tmp_path / precompiled.TABLE_NAME
    entries = precompile.build(out, [FIXTURE])
    table = precompiled.Table.unpack(out.read_bytes())
    # Two frozen dataclasses' worth of methods, one plain one's, two named tuples' __new__; the
    # fixture's patterns, and those importing dataclasses compiled.
    assert entries - table.regexes == 6 + 3 + 2
    assert table.regex(*precompiled_classes.PATTERNS[0]) is not None
    assert table.regexes >= len(precompiled_classes.PATTERNS)
    return table


@pytest.fixture
def installed(table: precompiled.Table) -> Iterator[precompiled.Table]:
    precompiled.install(table)
    try:
        yield table
    finally:
        precompiled.unshadow()


def _counts() -> tuple[int, int]:
    return precompiled.COUNTS.used, len(precompiled.COUNTS.missed)


def test_classes_made_from_the_table_are_the_ones_the_compiler_makes(
        installed: precompiled.Table) -> None:
    used, missed = _counts()
    made = precompiled_classes.make_classes()
    assert _counts() == (used + 6 + 3 + 2, missed)  # nothing compiled
    precompiled.unshadow()
    compiled = precompiled_classes.make_classes()
    for name, cls in made.items():
        for method in ("__init__", "__repr__", "__eq__", "__setattr__", "__hash__", "__new__"):
            ours, theirs = getattr(cls, method), getattr(compiled[name], method)
            if hasattr(theirs, "__code__"):
                assert ours.__code__.co_code == theirs.__code__.co_code, (name, method)
                assert ours.__code__.co_consts == theirs.__code__.co_consts, (name, method)
                # No __future__ import of this module leaked in: annotations are objects.
                assert ours.__annotations__ == theirs.__annotations__, (name, method)
    lease = made["Lease"]("10.0.2.15", routers=("10.0.2.2",))
    assert repr(lease) == ("make_classes.<locals>.Lease(address='10.0.2.15', prefix=24, "
                           "routers=('10.0.2.2',))")
    assert lease == made["Lease"]("10.0.2.15", 24, ("10.0.2.2",))
    assert hash(lease) == hash(made["Lease"]("10.0.2.15", 24, ("10.0.2.2",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        lease.prefix = 16
    pod = made["Pod"]("web")
    pod.labels["app"] = "web"
    assert made["Pod"]("web").labels == {}  # the default factory, per instance
    assert made["Pair"](1, right=2) == (1, 2)
    assert made["Point"](x=3, y=4)._asdict() == {"x": 3, "y": 4}


def test_a_text_the_table_lacks_is_compiled_as_before(installed: precompiled.Table) -> None:
    used, missed = _counts()

    @dataclasses.dataclass
    class NotInTheTable:
        name: str
        count: int = 0

    assert _counts() == (used, missed + 3)
    assert repr(NotInTheTable("x")).endswith("<locals>.NotInTheTable(name='x', count=0)")


def test_a_text_is_never_given_the_code_of_another(table: precompiled.Table) -> None:
    """Entries are found by a CRC-32: one that points at another text is a miss, not its code."""
    data = zlib.decompress(precompiled.Table.pack([("eval", "lambda: 1")]))
    index, blob, _ = marshal.loads(data)
    [(_, at)] = index.items()
    forged = precompiled.Table({precompiled.Table._key("eval", b"lambda: 2"): at}, blob)
    assert forged.code("eval", "lambda: 2") is None
    code = precompiled.Table(index, blob).code("eval", "lambda: 1")
    assert code is not None and eval(code)() == 1


def test_a_damaged_entry_is_compiled_instead() -> None:
    index, blob, _ = marshal.loads(zlib.decompress(precompiled.Table.pack([("eval", "lambda: 1")])))
    code_at = len(blob) - len(marshal.dumps(precompiled.compile_text("eval", "lambda: 1")))
    for damaged in (blob[:code_at] + b"\xff" * (len(blob) - code_at),  # not marshal data
                    blob[:code_at] + marshal.dumps(42)[:len(blob) - code_at].ljust(
                        len(blob) - code_at, b"\0"),  # marshal data, not code
                    blob[:code_at + 3]):  # cut short
        assert precompiled.Table(index, damaged).code("eval", "lambda: 1") is None


@pytest.mark.parametrize("raw", [b"", b"not zlib", zlib.compress(marshal.dumps([1, 2]))])
def test_a_damaged_table_is_refused(raw: bytes) -> None:
    with pytest.raises((ValueError, EOFError, TypeError, zlib.error)):
        precompiled.Table.unpack(raw)


def test_unshadow_gives_the_modules_their_builtins_back(installed: Any) -> None:
    import collections

    assert "exec" in vars(dataclasses) and "eval" in vars(collections)
    precompiled.unshadow()
    assert "exec" not in vars(dataclasses) and "eval" not in vars(collections)


# Patterns of every kind the engine has: groups named and not, back references, look-around,
# repeats, classes, flags inside and outside the pattern, bytes.
PATTERNS: list[tuple[str | bytes, int]] = [
    *precompiled_classes.PATTERNS,
    (r"(?P<key>[a-z]+)=(?P<value>.*?)(?P=key)?$", 0),
    (r"(?<=@)\w+(?!\.)", re.ASCII),
    (r"(?i)ünïcode\s{2,5}[^\W\d]+", 0),
    (r"(a|b)*?c{3}|[\x00-\x1f\\]", re.MULTILINE | re.DOTALL),
    (r"""
        (?P<int>-?\d+)   # a number
        (?:\.(\d+))?      # its fraction
     """, re.VERBOSE),
    (b"(?s)^GET (?P<path>/[^ ]*) HTTP/1\\.[01]\r\n", 0),
    (r"\bword\b", re.IGNORECASE),
]


@pytest.mark.parametrize("pattern,flags", PATTERNS)
def test_a_pattern_from_its_parts_is_the_one_re_compiles(pattern: str | bytes, flags: int) -> None:
    """The engine's program, flags and groups: the Pattern made from them compares equal (same
    pattern, flags and program) and matches the same."""
    parts = precompiled.regex_parts(pattern, flags)
    theirs = re.compile(pattern, flags)
    ours = _sre.compile(pattern, *marshal.loads(marshal.dumps(parts)))
    assert ours == theirs
    assert (ours.flags, ours.groups, dict(ours.groupindex)) == (
        theirs.flags, theirs.groups, dict(theirs.groupindex))


def test_patterns_come_from_the_table_and_others_are_compiled(
        installed: precompiled.Table) -> None:
    re.purge()  # re's own cache would answer before its compiler is asked
    used, missed = precompiled.COUNTS.regexes_used, len(precompiled.COUNTS.regexes_missed)
    for pattern, flags in precompiled_classes.PATTERNS:
        found = re.compile(pattern, flags)
        assert found.match("lease-42" if isinstance(pattern, str) else b"lease-42")
    assert precompiled.COUNTS.regexes_used == used + len(precompiled_classes.PATTERNS)
    # Not in the table: compiled as before, and a bad pattern is refused as before.
    assert re.compile(r"not (in) the table").groups == 1
    assert len(precompiled.COUNTS.regexes_missed) == missed + 1
    with pytest.raises(re.error) as refused:
        re.compile(r"(unbalanced")
    assert "missing )" in str(refused.value)
    # The flags are part of the key: the same text with other flags is not the stored program.
    pattern, flags = precompiled_classes.PATTERNS[0]
    assert installed.regex(pattern, flags ^ re.IGNORECASE) is None
    assert installed.regex(pattern.encode() if isinstance(pattern, str) else pattern.decode(),
                           flags) is None
    re.purge()


def test_a_damaged_pattern_entry_is_compiled_instead() -> None:
    pattern, flags = r"(?P<name>\w+)", 0
    mode = f"{precompiled.REGEX_MODE}{flags}"
    index, blob, _ = marshal.loads(zlib.decompress(precompiled.Table.pack([(mode, pattern)])))
    assert precompiled.Table(index, blob, 1).regex(pattern, flags) is not None
    text = precompiled.regex_text(pattern)
    value_at = 8 + len(text)
    for damaged in (blob[:value_at] + marshal.dumps((1, 2)),  # marshal data, not the parts
                    blob[:value_at] + b"\xff" * 8,  # not marshal data
                    blob[:value_at + 3]):  # cut short
        table = precompiled.Table(index, damaged, 1)
        assert table.regex(pattern, flags) is None


def test_unshadow_gives_re_its_compiler_back(installed: Any) -> None:
    compiler = re._compiler.compile  # type: ignore[attr-defined]
    assert compiler is not precompiled._COMPILE_REGEX
    precompiled.unshadow()
    assert re._compiler.compile is precompiled._COMPILE_REGEX  # type: ignore[attr-defined]
