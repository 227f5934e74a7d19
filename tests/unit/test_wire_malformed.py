"""Malformed input to the guest's codec (init/api/wire.py): whatever the bytes, reading raises
DecodeError and nothing else, and what it reads, protobuf reads the same."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import api_implementation
from google.protobuf.message import DecodeError as PbDecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from init.api import wire
from tests.fixtures.messages import ONE, Schema, kinds, messages, varint

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCHEMAS = pytest.mark.parametrize("schema", [ONE, kinds()], ids=["one", "kinds"])


def _read_varint(data: bytes, at: int) -> tuple[int, int] | None:
    """(value, end) of the varint at `at`, None if it does not end within 10 bytes."""
    value = 0
    for i in range(10):
        if at + i >= len(data):
            return None
        value |= (data[at + i] & 0x7F) << (7 * i)
        if data[at + i] < 0x80:
            return value, at + i + 1
    return None


def _minimal_tags(data: bytes, message: Descriptor) -> bytes:
    """`data` with every tag written in as few bytes as it takes, into nested messages too; as
    it is where it is not a well-formed message. protobuf's pure-Python backend finds a field by
    its tag's bytes, so a tag written longer than it needs (valid: upb and the guest read it as
    its field) is an unknown field there."""
    out = bytearray()
    at = 0
    while at < len(data):
        tag = _read_varint(data, at)
        if tag is None or tag[0] >= 1 << 32:
            return data
        number, wire_type = tag[0] >> 3, tag[0] & 7
        start = tag[1]
        if wire_type == 0:
            value = _read_varint(data, start)
            if value is None:
                return data
            end = value[1]
        elif wire_type in (1, 5):
            end = start + (8 if wire_type == 1 else 4)
        elif wire_type == 2:
            length = _read_varint(data, start)
            if length is None:
                return data
            end = length[1] + length[0]
            field = message.fields_by_number.get(number)
            if (end <= len(data) and field is not None
                    and field.type == FieldDescriptor.TYPE_MESSAGE):
                inner = _minimal_tags(data[length[1]:end], field.message_type)
                out += varint(tag[0]) + varint(len(inner)) + inner
                at = end
                continue
        else:
            return data
        if end > len(data):
            return data
        out += varint(tag[0]) + data[start:end]
        at = end
    return bytes(out)


def _both(schema: Schema, name: str, data: bytes) -> tuple[Any, Any]:
    """(ours, protobuf's) reading of `data` as message `name`; None where reading failed."""
    pb_cls, our_cls = schema.pair(name)
    try:
        ours = wire.decode(data, our_cls)
    except wire.DecodeError:
        ours = None
    if api_implementation.Type() == "python":
        data = _minimal_tags(data, pb_cls.DESCRIPTOR)
    try:
        theirs = pb_cls.FromString(data)
        theirs.DiscardUnknownFields()
    except (PbDecodeError, UnicodeDecodeError):  # the pure-Python backend's, for bad UTF-8
        theirs = None
    return ours, theirs


def _has_maps(cls: type[wire.Message]) -> bool:
    return any(f.entry is not None or (f.kind == "message" and f.type is not cls
                                       and _has_maps(f.type)) for f in cls.FIELDS)


def _agree(ours: Any, theirs: Any) -> None:
    """What we read, protobuf reads, and the same: as bytes, the same message."""
    if ours is None:
        return
    assert theirs is not None
    if api_implementation.Type() == "upb" and _has_maps(type(ours)):
        # upb drops a map entry that holds an unknown field, where protobuf's pure-Python
        # backend (and C++) keep its key and value, as the guest does: the pure-Python run of
        # these tests (test_wire.py) compares those.
        return
    # As text: a flipped bit may make a NaN, which is unequal to itself.
    assert str(type(theirs).FromString(wire.encode(ours))) == str(theirs)


@SCHEMAS
@SETTINGS
@given(data=st.data())
def test_every_truncation_of_a_valid_encoding(schema: Schema, data: st.DataObject) -> None:
    _, ours = data.draw(messages(schema))
    encoded = wire.encode(ours)
    for end in range(len(encoded)):
        mine, theirs = _both(schema, type(ours).__name__, encoded[:end])
        _agree(mine, theirs)
        # A cut inside a field fails both; a cut between fields is a shorter valid message.
        assert (mine is None) == (theirs is None), encoded[:end]


@SCHEMAS
@SETTINGS
@given(data=st.data(), raw=st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(schema: Schema, data: st.DataObject, raw: bytes
                                              ) -> None:
    name = data.draw(st.sampled_from(schema.names()))
    mine, theirs = _both(schema, name, raw)
    _agree(mine, theirs)


@SETTINGS
@given(data=st.data(), flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)),
                                      min_size=1, max_size=3))
def test_corrupted_encodings_raise_only_decode_error(data: st.DataObject,
                                                     flips: list[tuple[int, int]]) -> None:
    schema = kinds()
    _, ours = data.draw(messages(schema))
    corrupt = bytearray(wire.encode(ours))
    if not corrupt:
        return
    for where, mask in flips:
        corrupt[where % len(corrupt)] ^= mask
    _agree(*_both(schema, type(ours).__name__, bytes(corrupt)))


def test_a_tag_longer_than_it_needs_names_its_field() -> None:
    # Tag 0x4d (field 9, sfixed32) as two bytes: the spec's varints may be longer than needed.
    data = b"\xcd\x00" + (25169921).to_bytes(4, "little") + b"\x10\x80\x01"
    ours, theirs = _both(kinds(), "Scalars", data)
    assert (ours.sf32, ours.i64) == (25169921, 128)
    _agree(ours, theirs)


@pytest.mark.parametrize(("message", "data", "error"), [
    ("Container", b"\x20" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    ("Container", b"\x20\xff\xff", "truncated varint"),
    ("Container", b"\x0a\x05abc", "past the end"),
    ("Container", b"\x0a\x02\xc3\x28", "invalid UTF-8"),
    ("Container", b"\x0a\x03\xed\xa0\x80", "invalid UTF-8"),  # a surrogate
    ("Container", b"\x0a\x00\x20\x80", "truncated varint"),
    ("Container", b"\x08\x01", "wire type 0 where 2 belongs"),  # id is a string
    ("Container", b"\x0b\x0c", "wire type 3"),
    ("Container", b"\x6b\x6c", "group"),  # an unknown group
    ("Container", b"\x6e", "invalid"),  # wire type 6
    ("Container", b"\x6f", "invalid"),  # wire type 7
    ("Container", b"\x00\x00", "invalid field number 0"),
    ("Container", b"\x69\x00\x00\x00", "truncated fixed-size"),  # unknown fixed64, 3 bytes
    ("Container", varint(1 << 32 | 2) + b"\x00", "invalid field number"),
    ("ImageInfo", b"\x6a\x04\x0a\x02\xff\xfe", "invalid UTF-8"),  # a map key
    ("ImageInfo", b"\x6a\x02\x00\x00", "invalid field number 0"),  # in a map entry
    ("ImageInfo", b"\x6a\x06" + varint(1 << 32 | 0) + b"\x00", "invalid field number"),
    ("ExecInput", b"\x0a\x03\x0a\x05a", "past the end"),  # inside the oneof's message
])
def test_malformed_input_names_the_fault(message: str, data: bytes, error: str) -> None:
    with pytest.raises(wire.DecodeError, match=error):
        wire.decode(data, getattr(ONE.msgs, message))


def test_known_field_numbers_keep_their_numbers_beyond_32_bits() -> None:
    container = wire.decode(b"\x20" + b"\xff" * 9 + b"\x01", ONE.msgs.Container)
    assert container.exit_code == -1  # a negative int32 is sign-extended to 10 bytes
    assert wire.decode(b"\x20\x80\x80\x80\x80\x10", ONE.msgs.Container).exit_code == 0


def _nested(depth: int) -> bytes:
    data = b"\x10\x01"  # depth = 1
    for _ in range(depth):
        data = b"\x0a" + varint(len(data)) + data
    return data


def test_nesting_is_bounded_as_in_protobuf() -> None:
    node = kinds().msgs.Node
    assert wire.decode(_nested(wire.MAX_DEPTH), node).child is not None
    with pytest.raises(wire.DecodeError, match="nested deeper"):
        wire.decode(_nested(wire.MAX_DEPTH + 1), node)
    with pytest.raises(wire.DecodeError, match="nested deeper"):
        wire.decode(_nested(10_000), node)
    with pytest.raises(PbDecodeError):
        kinds().pb.Node.FromString(_nested(wire.MAX_DEPTH + 1))
