"""The proto3 wire format of the API's messages, without google.protobuf.

protobuf's pure-Python runtime builds descriptors, pools and message classes when its generated
module is imported: ~20 ms and ~4 MiB of the init's memory on the host, several times the time
under TCG. The guest needs none of that to read and write a few plain messages, so it uses
classes generated from proto/one.proto (`oneproto/one_msgs.py`, by onebuild/protomsgs.py), each
declaring its fields here, and this codec.

What is written is byte for byte what protobuf's deterministic serialisation writes: fields by
ascending number, proto3 defaults left out (oneof members and message fields have presence:
None is unset), repeated scalars packed, map entries sorted by key (as the pure-Python and C++
backends; upb keeps an order of its own), negative int32/int64 as 10-byte varints.

Reading takes whatever protobuf writes: packed or unpacked repeated scalars, repeated
occurrences (the last scalar wins, messages merge), map entries in any order, unknown fields
(skipped). It is stricter than protobuf only where no writer of proto3 goes: a known field with
another wire type, and groups, are errors rather than unknown fields. Whatever cannot be read
raises `DecodeError`, nothing else; nesting is bounded by MAX_DEPTH.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, TypeVar

MAX_DEPTH = 100  # nested messages, as protobuf's default recursion limit
MAX_FIELD = (1 << 29) - 1
_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1

VARINT, I64, LEN, I32 = 0, 1, 2, 5

# kind → the wire type of one value
_WIRE = {"int32": VARINT, "int64": VARINT, "uint32": VARINT, "uint64": VARINT,
         "sint32": VARINT, "sint64": VARINT, "bool": VARINT, "enum": VARINT,
         "fixed64": I64, "sfixed64": I64, "double": I64,
         "fixed32": I32, "sfixed32": I32, "float": I32,
         "string": LEN, "bytes": LEN, "message": LEN, "map": LEN}
_STRUCT = {"fixed64": struct.Struct("<Q"), "sfixed64": struct.Struct("<q"),
           "double": struct.Struct("<d"), "fixed32": struct.Struct("<I"),
           "sfixed32": struct.Struct("<i"), "float": struct.Struct("<f")}
_RANGE = {"int32": (-1 << 31, (1 << 31) - 1), "sint32": (-1 << 31, (1 << 31) - 1),
          "enum": (-1 << 31, (1 << 31) - 1), "uint32": (0, _MASK32),
          "int64": (-1 << 63, (1 << 63) - 1), "sint64": (-1 << 63, (1 << 63) - 1),
          "uint64": (0, _MASK64)}
_DEFAULT: dict[str, Any] = {"string": "", "bytes": b"", "bool": False,
                            "double": 0.0, "float": 0.0}


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the message type; the text says where and why."""


class EncodeError(ValueError):
    """A message holds a value its field cannot carry (out of range, wrong type)."""


class Field:
    """One field of a message, as proto/one.proto declares it."""

    __slots__ = ("default", "entry", "kind", "name", "number", "oneof", "packed", "presence",
                 "repeated", "tag", "type", "wire")

    def __init__(self, number: int, name: str, kind: str, *, repeated: bool = False,
                 oneof: str | None = None, type: Any = None,
                 entry: tuple[Field, Field] | None = None) -> None:
        self.number = number
        self.name = name
        self.kind = kind
        self.repeated = repeated or entry is not None
        self.oneof = oneof
        self.type = type  # the message class, or the enum class
        self.entry = entry  # a map's key and value fields
        self.wire = _WIRE[kind]
        self.packed = self.repeated and self.wire != LEN
        self.tag = _varint((number << 3) | (LEN if self.packed else self.wire))
        self.presence = not self.repeated and (oneof is not None or kind == "message")
        # The value of an unset singular field without presence (a map's key and value too).
        self.default = None if self.presence else _DEFAULT.get(kind, 0)


class Message:
    """A generated message: one slot per field, declared by `declare`."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    ONEOFS: ClassVar[dict[str, tuple[str, ...]]] = {}
    BY_NUMBER: ClassVar[dict[int, Field]] = {}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, as protobuf's messages

    def __repr__(self) -> str:
        shown = [f"{f.name}={_show(f, v)}" for f in self.FIELDS
                 if _is_set(f, v := getattr(self, f.name))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def WhichOneof(self, group: str) -> str | None:  # protobuf's name
        """The name of the member of oneof `group` that is set, None if none is."""
        try:
            members = self.ONEOFS[group]
        except KeyError:
            raise ValueError(f"{type(self).__name__} has no oneof {group!r}") from None
        return next((m for m in members if getattr(self, m) is not None), None)


class OneofMessage(Message):
    """A message with oneofs: setting one member clears the others, as in protobuf."""

    __slots__ = ()
    _GROUP_OF: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if value is not None:
            for other in self._GROUP_OF.get(name, ()):
                object.__setattr__(self, other, None)
        object.__setattr__(self, name, value)


def declare(cls: type[Message], *fields: Field) -> None:
    """Give a generated class its fields (after all classes exist: fields name other classes)."""
    cls.FIELDS = tuple(sorted(fields, key=lambda f: f.number))
    cls.BY_NUMBER = {f.number: f for f in fields}
    groups: dict[str, list[str]] = {}
    for f in cls.FIELDS:
        if f.oneof is not None:
            groups.setdefault(f.oneof, []).append(f.name)
    cls.ONEOFS = {g: tuple(names) for g, names in groups.items()}
    if issubclass(cls, OneofMessage):
        cls._GROUP_OF = {m: tuple(o for o in names if o != m)
                         for names in cls.ONEOFS.values() for m in names}


def _show(f: Field, v: Any) -> str:
    if f.kind == "enum":
        names = f.type._value2member_map_
        if f.repeated:
            return "[" + ", ".join(n.name if (n := names.get(i)) else str(i) for i in v) + "]"
        return member.name if (member := names.get(v)) is not None else str(v)
    return repr(v)


# --- encoding --------------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _scalar(f: Field, kind: str, v: Any) -> bytes:
    """One value of a non-message kind, without its tag."""
    if kind == "string":
        if not isinstance(v, str):
            raise EncodeError(f"{f.name}: {type(v).__name__} where a str belongs")
        try:
            data = v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise EncodeError(f"{f.name}: not encodable as UTF-8: {e}") from None
        return _varint(len(data)) + data
    if kind == "bytes":
        if not isinstance(v, bytes | bytearray | memoryview):
            raise EncodeError(f"{f.name}: {type(v).__name__} where bytes belong")
        return _varint(len(v)) + bytes(v)
    if kind == "bool":
        return b"\x01" if v else b"\x00"
    packer = _STRUCT.get(kind)
    if packer is not None:
        try:
            return packer.pack(v)
        except (struct.error, OverflowError) as e:
            raise EncodeError(f"{f.name}: {v!r} is no {kind}: {e}") from None
    if not isinstance(v, int):
        raise EncodeError(f"{f.name}: {type(v).__name__} where an integer belongs")
    low, high = _RANGE[kind]
    if not low <= v <= high:
        raise EncodeError(f"{f.name}: {v} out of range for {kind}")
    if kind[0] == "s":  # zigzag: small negative numbers stay short
        return _varint((v << 1) ^ (v >> (63 if kind == "sint64" else 31)))
    return _varint(v & _MASK64)


def _is_set(f: Field, v: Any) -> bool:
    """Whether `v` is written: present, a non-empty list or map, or not the default."""
    if f.presence:
        return v is not None
    if f.repeated:
        return bool(v)
    if f.wire == I32 or f.wire == I64:
        # -0.0 equals 0.0 but is not the default: protobuf compares the bits.
        return bool(v != 0 or _STRUCT[f.kind].pack(v) != _STRUCT[f.kind].pack(0))
    return bool(v != f.default)


def _write(out: bytearray, msg: Message, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise EncodeError(f"messages nested deeper than {MAX_DEPTH}")
    for f in msg.FIELDS:
        v = getattr(msg, f.name)
        if f.entry is not None:
            key, value = f.entry
            for k in sorted(v):
                entry = bytearray(key.tag + _scalar(key, key.kind, k) + value.tag)
                _value(entry, value, v[k], depth)
                out += f.tag + _varint(len(entry)) + entry
        elif f.packed:
            if v:
                body = b"".join(_scalar(f, f.kind, item) for item in v)
                out += f.tag + _varint(len(body)) + body
        elif f.repeated:
            for item in v:
                out += f.tag
                _value(out, f, item, depth)
        elif _is_set(f, v):
            out += f.tag
            _value(out, f, v, depth)


def _value(out: bytearray, f: Field, v: Any, depth: int) -> None:
    if f.kind == "message":
        if not isinstance(v, f.type):
            raise EncodeError(f"{f.name}: {type(v).__name__} where a {f.type.__name__} belongs")
        sub = bytearray()
        _write(sub, v, depth + 1)
        out += _varint(len(sub))
        out += sub
    else:
        out += _scalar(f, f.kind, v)


def encode(msg: Message) -> bytes:
    """The message's bytes, as protobuf's SerializeToString(deterministic=True) writes them."""
    out = bytearray()
    _write(out, msg)
    return bytes(out)


# --- decoding --------------------------------------------------------------------------------

M = TypeVar("M", bound=Message)


def decode(data: bytes, cls: type[M]) -> M:
    """A `cls` read from `data`; DecodeError if the bytes are not one."""
    msg = cls()
    _merge(memoryview(data), 0, len(data), msg, 0)
    return msg


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _read_len(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    n, pos = _read_varint(buf, pos, end)
    if n > end - pos:
        raise DecodeError(f"length {n} runs past the end of its message")
    return pos + n, pos


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def _from_varint(f: Field, kind: str, v: int) -> Any:
    if kind == "int32" or kind == "enum":
        v = _signed(v & _MASK32, 32)
        return f.type._value2member_map_.get(v, v) if f.type is not None else v
    if kind == "int64":
        return _signed(v, 64)
    if kind == "uint32":
        return v & _MASK32
    if kind == "bool":
        return v != 0
    if kind == "sint32":
        v &= _MASK32
    if kind[0] == "s":
        return (v >> 1) ^ -(v & 1)
    return v  # uint64


def _read_value(buf: memoryview, pos: int, end: int, f: Field, kind: str, wire: int
                ) -> tuple[Any, int]:
    """One non-message value of `kind` at `pos`, and the position after it."""
    if wire == VARINT:
        v, pos = _read_varint(buf, pos, end)
        return _from_varint(f, kind, v), pos
    if wire != LEN:
        packer = _STRUCT[kind]
        if end - pos < packer.size:
            raise DecodeError(f"{f.name}: truncated {kind}")
        return packer.unpack_from(buf, pos)[0], pos + packer.size
    stop, pos = _read_len(buf, pos, end)
    if kind == "bytes":
        return bytes(buf[pos:stop]), stop
    try:
        return str(buf[pos:stop], "utf-8"), stop
    except UnicodeDecodeError as e:
        raise DecodeError(f"{f.name}: invalid UTF-8: {e.reason}") from None


def _skip(buf: memoryview, pos: int, end: int, wire: int) -> int:
    if wire == VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire == LEN:
        return _read_len(buf, pos, end)[0]
    size = {I64: 8, I32: 4}.get(wire)
    if size is None:
        raise DecodeError(f"wire type {wire} ({'group' if wire in (3, 4) else 'invalid'}) "
                          "is not supported")
    if end - pos < size:
        raise DecodeError("truncated fixed-size field")
    return pos + size


def _merge(buf: memoryview, pos: int, end: int, msg: Message, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError(f"messages nested deeper than {MAX_DEPTH}")
    fields = msg.BY_NUMBER
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if not 0 < number <= MAX_FIELD:
            raise DecodeError(f"invalid field number {number}")
        f = fields.get(number)
        if f is None:
            pos = _skip(buf, pos, end, wire)
        elif f.packed and wire == LEN:
            stop, pos = _read_len(buf, pos, end)
            items = getattr(msg, f.name)
            while pos < stop:
                item, pos = _read_value(buf, pos, stop, f, f.kind, f.wire)
                items.append(item)
        elif wire != f.wire:
            raise DecodeError(f"{type(msg).__name__}.{f.name}: wire type {wire} where "
                              f"{f.wire} belongs")
        elif f.entry is not None:
            stop, pos = _read_len(buf, pos, end)
            k, v = _read_entry(buf, pos, stop, f.entry, depth + 1)
            getattr(msg, f.name)[k] = v
            pos = stop
        elif f.kind == "message":
            stop, pos = _read_len(buf, pos, end)
            sub = None if f.repeated else getattr(msg, f.name)
            if sub is None:
                sub = f.type()
                _merge(buf, pos, stop, sub, depth + 1)
                if f.repeated:
                    getattr(msg, f.name).append(sub)
                else:
                    setattr(msg, f.name, sub)
            else:
                _merge(buf, pos, stop, sub, depth + 1)
            pos = stop
        else:
            v, pos = _read_value(buf, pos, end, f, f.kind, wire)
            if f.repeated:
                getattr(msg, f.name).append(v)
            else:
                setattr(msg, f.name, v)


def _read_entry(buf: memoryview, pos: int, end: int, entry: tuple[Field, Field], depth: int
                ) -> tuple[Any, Any]:
    """A map entry: its key and value fields, defaults for what is missing."""
    key_f, value_f = entry
    key: Any = key_f.default
    value: Any = value_f.type() if value_f.kind == "message" else value_f.default
    while pos < end:
        tag, pos = _read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        f = {1: key_f, 2: value_f}.get(number)
        if f is None:
            if not 0 < number <= MAX_FIELD:
                raise DecodeError(f"invalid field number {number}")
            pos = _skip(buf, pos, end, wire)
        elif wire != f.wire:
            raise DecodeError(f"map entry {f.name}: wire type {wire} where {f.wire} belongs")
        elif f.kind == "message":
            stop, pos = _read_len(buf, pos, end)
            _merge(buf, pos, stop, value, depth + 1)
            pos = stop
        elif f is key_f:
            key, pos = _read_value(buf, pos, end, f, f.kind, wire)
        else:
            value, pos = _read_value(buf, pos, end, f, f.kind, wire)
    return key, value

