"""The build's precompiled code for what dataclasses and namedtuple generate (init/precompiled.py):
the classes made from it are the ones the compiler makes, a text it lacks is compiled as before,
and a text is never given another text's code."""

from __future__ import annotations

import dataclasses
import marshal
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
    # Two frozen dataclasses' worth of methods, one plain one's, two named tuples' __new__.
    assert precompile.build(out, [FIXTURE]) == 6 + 3 + 2
    return precompiled.Table.unpack(out.read_bytes())


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
    index, blob = marshal.loads(data)
    [(_, at)] = index.items()
    forged = precompiled.Table({precompiled.Table._key("eval", b"lambda: 2"): at}, blob)
    assert forged.code("eval", "lambda: 2") is None
    code = precompiled.Table(index, blob).code("eval", "lambda: 1")
    assert code is not None and eval(code)() == 1


def test_a_damaged_entry_is_compiled_instead() -> None:
    index, blob = marshal.loads(zlib.decompress(precompiled.Table.pack([("eval", "lambda: 1")])))
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
