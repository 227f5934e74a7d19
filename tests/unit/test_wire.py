"""The guest's codec (init/api/wire.py) against protobuf, on every message type of one.proto and
of tests/fixtures/kinds.proto: the same bytes, each side reads the other's, unknown fields,
repeated occurrences and unpacked repeated scalars read as protobuf reads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.internal import api_implementation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from init.api import wire
from tests.fixtures import messages as m
from tests.fixtures.messages import ONE, Schema, build, kinds, messages, tree, varint
from tests.fixtures.paths import ROOT

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCHEMAS = pytest.mark.parametrize("schema", [ONE, kinds()], ids=["one", "kinds"])


def test_every_message_and_enum_of_one_proto_has_its_class() -> None:
    from oneproto import one_msgs, one_pb2

    for name in ONE.names():
        assert issubclass(getattr(one_msgs, name), wire.Message), name
    for name, enum in one_pb2.DESCRIPTOR.enum_types_by_name.items():
        assert {m.name: int(m) for m in getattr(one_msgs, name)} == \
            {v.name: v.number for v in enum.values}


@SCHEMAS
@SETTINGS
@given(data=st.data())
def test_same_bytes_as_protobuf_and_each_reads_the_other(schema: Schema, data: st.DataObject
                                                         ) -> None:
    pb, ours = data.draw(messages(schema))
    written = wire.encode(ours)
    _assert_same_bytes(written, pb)
    assert type(pb).FromString(written) == pb
    assert wire.decode(pb.SerializeToString(), type(ours)) == ours


def _assert_same_bytes(written: bytes, pb: Any) -> None:
    expected = pb.SerializeToString(deterministic=True)
    if api_implementation.Type() == "upb" and m.unordered_maps(pb):
        # Same entries in upb's order: the pure-Python run below compares the bytes.
        assert len(written) == len(expected)
        assert type(pb).FromString(written) == type(pb).FromString(expected)
    else:
        assert written == expected, (written, pb)


@pytest.mark.skipif(api_implementation.Type() == "python", reason="this is the pure-Python run")
def test_against_protobufs_pure_python_backend_too() -> None:
    """The comparisons again with protobuf's pure-Python backend, which sorts map entries and
    keeps map entries with unknown fields (as C++ does; upb does neither)."""
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           __file__, str(Path(__file__).with_name("test_wire_malformed.py"))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]


@st.composite
def _unknown_field(draw: st.DrawFn, known: set[int]) -> bytes:
    number = draw(st.integers(1, wire.MAX_FIELD).filter(lambda n: n not in known))
    kind = draw(st.sampled_from([wire.VARINT, wire.I64, wire.LEN, wire.I32]))
    tag = varint(number << 3 | kind)
    if kind == wire.VARINT:
        return tag + varint(draw(st.integers(0, (1 << 64) - 1)))
    if kind == wire.LEN:
        payload = draw(st.binary(max_size=12))
        return tag + varint(len(payload)) + payload
    return tag + draw(st.binary(min_size=8 if kind == wire.I64 else 4,
                                max_size=8 if kind == wire.I64 else 4))


@SCHEMAS
@SETTINGS
@given(data=st.data())
def test_unknown_fields_between_known_ones_are_skipped(schema: Schema, data: st.DataObject
                                                       ) -> None:
    pb, ours = data.draw(messages(schema))
    cls = type(ours)
    # The message field by field, as it is written, with unknown fields before, between, after.
    pieces = [wire.encode(cls(**{f.name: getattr(ours, f.name)})) for f in cls.FIELDS]
    unknown = _unknown_field(set(cls.BY_NUMBER))
    mixed = b"".join(b"".join(data.draw(st.lists(unknown, max_size=2))) + p
                     for p in [*pieces, b""])
    assert wire.decode(mixed, cls) == ours
    theirs = type(pb).FromString(mixed)
    theirs.DiscardUnknownFields()
    assert theirs == pb
    _assert_same_bytes(wire.encode(wire.decode(mixed, cls)), theirs)


@SCHEMAS
@SETTINGS
@given(data=st.data())
def test_repeated_occurrences_merge_as_in_protobuf(schema: Schema, data: st.DataObject) -> None:
    """Two encodings of one type, one after the other: the later scalar wins, messages merge,
    lists and maps grow, the later oneof member replaces the other — exactly as protobuf."""
    name = data.draw(st.sampled_from(schema.names()))
    desc = schema.pb.DESCRIPTOR.message_types_by_name[name]
    (pb1, ours1), (_, ours2) = (build(schema, desc, data.draw(tree(desc))) for _ in range(2))
    assert wire.decode(wire.encode(ours1), type(ours1)) == ours1
    joined = wire.encode(ours1) + wire.encode(ours2)
    merged = wire.decode(joined, type(ours1))
    _assert_same_bytes(wire.encode(merged), type(pb1).FromString(joined))


def _unpacked(ours: Any, pb: Any) -> bytes:
    """A kinds.Repeated written with every repeated scalar unpacked (one tag per element), as
    proto2 writers and older proto3 ones do."""
    out = bytearray()
    for f in type(ours).FIELDS:
        for item in getattr(ours, f.name):
            if not f.packed:
                out += wire.encode(type(ours)(**{f.name: [item]}))
                continue
            one = type(pb)(**{f.name: [item]}).SerializeToString()
            header = len(varint(f.number << 3 | wire.LEN)) + 1  # tag, length (< 128)
            out += varint(f.number << 3 | f.wire) + one[header:]
    return bytes(out)


@SETTINGS
@given(data=st.data())
def test_unpacked_repeated_scalars_are_read_too(data: st.DataObject) -> None:
    schema = kinds()
    desc = schema.pb.DESCRIPTOR.message_types_by_name["Repeated"]
    pb, ours = build(schema, desc, data.draw(tree(desc)))
    raw = _unpacked(ours, pb)
    assert type(pb).FromString(raw) == pb  # the input is what protobuf reads as `pb`
    assert wire.decode(raw, type(ours)) == ours


def test_defaults_are_not_written_but_set_oneof_members_and_messages_are() -> None:
    from oneproto import one_msgs

    assert wire.encode(one_msgs.Container(exit_code=0, name="", state=0)) == b""
    assert wire.encode(one_msgs.ExecOutput(exit_code=0)) == b"\x18\x00"
    assert wire.encode(one_msgs.PullImageProgress(image=one_msgs.ImageInfo())) == b"\x2a\x00"
    assert wire.encode(one_msgs.Container(exit_code=-1)) == b"\x20" + b"\xff" * 9 + b"\x01"


def test_oneof_tracks_its_member_and_unknown_enum_numbers_are_kept() -> None:
    from oneproto import one_msgs

    out = one_msgs.ExecOutput(stdout=b"x")
    assert out.WhichOneof("output") == "stdout"
    out.exit_code = 3
    assert (out.WhichOneof("output"), out.stdout) == ("exit_code", None)
    with pytest.raises(ValueError, match="no oneof"):
        out.WhichOneof("input")
    assert one_msgs.ExecInput().WhichOneof("input") is None
    pod = wire.decode(b"\x18\x63", one_msgs.Pod)  # state 99: not in PodState
    assert pod.state == 99 and repr(pod) == "Pod(state=99)"
    pod = wire.decode(b"\x18\x02", one_msgs.Pod)
    assert pod.state is one_msgs.PodState.POD_STATE_RUNNING


def test_repr_shows_what_is_set() -> None:
    from oneproto import one_msgs

    pod = one_msgs.Pod(id="p", state=one_msgs.PodState.POD_STATE_RUNNING,
                       containers=[one_msgs.Container(id="c", exit_code=-1)])
    assert repr(pod) == ("Pod(id='p', state=POD_STATE_RUNNING, "
                         "containers=[Container(id='c', exit_code=-1)])")
    assert repr(one_msgs.ImageInfo(labels={"a": "b"})) == "ImageInfo(labels={'a': 'b'})"
    assert pod != one_msgs.Pod(id="p") and pod == wire.decode(wire.encode(pod), one_msgs.Pod)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"exit_code": 1 << 31}, "out of range for int32"),
    ({"exit_code": "1"}, "where an integer belongs"),
    ({"name": b"x"}, "where a str belongs"),
    ({"name": "\ud800"}, "not encodable as UTF-8"),
])
def test_values_a_field_cannot_carry_are_encode_errors(kwargs: dict[str, Any], error: str
                                                       ) -> None:
    from oneproto import one_msgs

    with pytest.raises(wire.EncodeError, match=error):
        wire.encode(one_msgs.Container(**kwargs))
