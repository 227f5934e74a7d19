"""Generate the guest's message classes and service base from one.proto's descriptor.

The init reads and writes its API messages with init/api/wire.py instead of google.protobuf
(whose pure-Python runtime costs the boot tens of ms and several MiB). Its classes are written
here from the FileDescriptorSet protoc produces, parsed with google.protobuf on the build host:

- `<name>_msgs.py`: one enum.IntEnum per enum, one class per message (`__slots__`, typed
  keyword constructor, proto3 defaults; message fields and oneof members None when unset), and
  the `declare(...)` of each message's fields for the codec;
- `<name>_service.py`: each service's grpclib base class over those classes (no client stub:
  the guest only serves).

What the codec does not carry is refused here, with the reason: proto2, imports, nested
messages and enums other than map entries, `optional`, `[packed = false]`.
"""

from __future__ import annotations

import keyword
from pathlib import Path

from google.protobuf import descriptor_pb2

from onebuild.tools import BuildError

FDP = descriptor_pb2.FieldDescriptorProto
MSGS_HEADER = '''"""Generated from {proto} by onebuild/protomsgs.py (`doit proto`); never edited.

The API's messages as plain classes for the guest, read and written by init/api/wire.py. Unset
message fields and oneof members are None; enum fields hold the enum member, or the number
itself for a number this file does not know (as proto3 keeps it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from init.api.wire import Field, Message, OneofMessage, declare
'''
SERVICE_HEADER = '''"""Generated from {proto} by onebuild/protomsgs.py (`doit proto`); never edited.

The grpclib service bases of the guest, over the plain classes of {msgs}.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import grpclib.const

from {package} import {msgs}

if TYPE_CHECKING:
    from grpclib.server import Stream
'''
PYTHON_TYPE = {"string": "str", "bytes": "bytes", "bool": "bool", "double": "float",
               "float": "float", "enum": "int"}
DEFAULT = {"string": '""', "bytes": 'b""', "bool": "False", "double": "0.0", "float": "0.0"}
# Names the Message base uses: a field by one of these names would hide it.
RESERVED = {"FIELDS", "ONEOFS", "BY_NUMBER", "WhichOneof", "_GROUP_OF"}


def _kind(f: descriptor_pb2.FieldDescriptorProto) -> str:
    return str(FDP.Type.Name(f.type)).removeprefix("TYPE_").lower()


class _File:
    """One .proto file's descriptor, checked for what the codec carries."""

    def __init__(self, fd: descriptor_pb2.FileDescriptorProto) -> None:
        self.fd = fd
        self.where = fd.name
        if fd.syntax != "proto3":
            raise BuildError(f"{fd.name}: only proto3 is supported (syntax {fd.syntax!r})")
        if fd.dependency:
            raise BuildError(f"{fd.name}: imports are not supported ({list(fd.dependency)})")
        self.prefix = f".{fd.package}." if fd.package else "."
        self.entries: dict[str, descriptor_pb2.DescriptorProto] = {}
        for m in fd.message_type:
            if m.enum_type:
                raise BuildError(f"{fd.name}: {m.name}: nested enums are not supported")
            for nested in m.nested_type:
                if not nested.options.map_entry:
                    raise BuildError(f"{fd.name}: {m.name}.{nested.name}: nested messages "
                                     "are not supported; declare it at the top level")
                self.entries[f"{self.prefix}{m.name}.{nested.name}"] = nested
            for f in m.field:
                self._check(m, f)

    def _check(self, m: descriptor_pb2.DescriptorProto, f: descriptor_pb2.FieldDescriptorProto
               ) -> None:
        where = f"{self.where}: {m.name}.{f.name}"
        if f.proto3_optional:
            raise BuildError(f"{where}: `optional` is not supported")
        if f.options.HasField("packed") and not f.options.packed:
            raise BuildError(f"{where}: [packed = false] is not supported")
        if keyword.iskeyword(f.name) or f.name in RESERVED:
            raise BuildError(f"{where}: the name cannot be an attribute of a Python class")
        if f.type == FDP.TYPE_GROUP:
            raise BuildError(f"{where}: groups are not supported")

    def local(self, type_name: str) -> str:
        """A top-level message or enum's class name, from protoc's `.package.Name`."""
        if not type_name.startswith(self.prefix):
            raise BuildError(f"{self.where}: {type_name} is not in this file")
        return type_name.removeprefix(self.prefix)

    def entry(self, f: descriptor_pb2.FieldDescriptorProto
              ) -> descriptor_pb2.DescriptorProto | None:
        """The map entry of a map field, None for any other field."""
        if f.type != FDP.TYPE_MESSAGE or f.label != FDP.LABEL_REPEATED:
            return None
        return self.entries.get(f.type_name)

    def python_type(self, f: descriptor_pb2.FieldDescriptorProto) -> str:
        kind = _kind(f)
        if kind == "message":
            return self.local(f.type_name)
        return PYTHON_TYPE.get(kind, "int")

    def field_spec(self, f: descriptor_pb2.FieldDescriptorProto, m: descriptor_pb2.DescriptorProto
                   ) -> str:
        """The `Field(...)` that declares `f` for the codec."""
        entry = self.entry(f)
        if entry is not None:
            key, value = (self.field_spec(e, entry) for e in entry.field)
            return f'Field({f.number}, "{f.name}", "map", entry=({key}, {value}))'
        args = [str(f.number), f'"{f.name}"', f'"{_kind(f)}"']
        if f.label == FDP.LABEL_REPEATED:
            args.append("repeated=True")
        if f.HasField("oneof_index"):
            args.append(f'oneof="{m.oneof_decl[f.oneof_index].name}"')
        if f.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            args.append(f"type={self.local(f.type_name)}")
        return f"Field({', '.join(args)})"

    def annotation(self, f: descriptor_pb2.FieldDescriptorProto) -> tuple[str, str, str, str]:
        """(attribute type, constructor parameter type, its default, the stored expression)."""
        entry = self.entry(f)
        if entry is not None:
            k, v = (self.python_type(e) for e in entry.field)
            return (f"dict[{k}, {v}]", f"Mapping[{k}, {v}] | None", "None",
                    f"dict({f.name} or {{}})")
        t = self.python_type(f)
        if f.label == FDP.LABEL_REPEATED:
            return f"list[{t}]", f"Iterable[{t}]", "()", f"list({f.name})"
        if f.type == FDP.TYPE_MESSAGE or f.HasField("oneof_index"):
            return f"{t} | None", f"{t} | None", "None", f.name
        return t, t, DEFAULT.get(_kind(f), "0"), f.name

    def message_class(self, m: descriptor_pb2.DescriptorProto) -> str:
        base = "OneofMessage" if m.oneof_decl else "Message"
        fields = sorted(m.field, key=lambda f: f.number)
        lines = [f"class {m.name}({base}):"]
        lines.append(f"    __slots__ = {tuple(f.name for f in fields)!r}")
        if not fields:
            return "\n".join(lines) + "\n"
        typed = [(f, self.annotation(f)) for f in fields]
        lines += [f"    {f.name}: {a[0]}" for f, a in typed]
        lines += ["", "    def __init__(", "            self, *,"]
        lines += [f"            {f.name}: {a[1]} = {a[2]}," for f, a in typed]
        lines += ["    ) -> None:"]
        lines += [f"        self.{f.name} = {a[3]}" for f, a in typed]
        return "\n".join(lines) + "\n"

    def messages_module(self) -> str:
        out = [MSGS_HEADER.format(proto=Path(self.fd.name).name)]
        for e in self.fd.enum_type:
            out.append(f"\n\nclass {e.name}(enum.IntEnum):\n" + "".join(
                f"    {v.name} = {v.number}\n" for v in e.value))
        for m in self.fd.message_type:
            out.append("\n\n" + self.message_class(m))
        out.append("\n\n")
        for m in self.fd.message_type:
            specs = "".join(f",\n        {self.field_spec(f, m)}" for f in m.field)
            out.append(f"declare({m.name}{specs})\n")
        return "".join(out)

    def service_module(self, package: str, msgs: str) -> str:
        out = [SERVICE_HEADER.format(proto=Path(self.fd.name).name, package=package, msgs=msgs)]
        for s in self.fd.service:
            body: list[str] = []
            mapping: list[str] = []
            for rpc in s.method:
                req, resp = (f"{msgs}.{self.local(t)}" for t in (rpc.input_type, rpc.output_type))
                body += ["    @abc.abstractmethod",
                         f"    async def {rpc.name}(self, stream: Stream[{req}, {resp}]) -> None:",
                         "        ...", ""]
                cardinality = ("STREAM" if rpc.client_streaming else "UNARY") + "_" + \
                    ("STREAM" if rpc.server_streaming else "UNARY")
                mapping += [f'            "/{self.fd.package}.{s.name}/{rpc.name}": '
                            "grpclib.const.Handler(",
                            f"                self.{rpc.name}, "
                            f"grpclib.const.Cardinality.{cardinality}, {req}, {resp}),"]
            out.append(f"\n\nclass {s.name}Base(abc.ABC):\n" + "\n".join(body) +
                       "\n    def __mapping__(self) -> dict[str, grpclib.const.Handler]:\n"
                       "        return {\n" + "\n".join(mapping) + "\n        }\n")
        return "".join(out)


def generate(descriptor_set: Path, out: Path, name: str) -> tuple[Path, Path]:
    """Write `<name>_msgs.py` and `<name>_service.py` into the package directory `out` from the
    one file of `descriptor_set` (protoc --descriptor_set_out, without --include_imports)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    if len(fds.file) != 1:
        raise BuildError(f"{descriptor_set}: one file expected, not {len(fds.file)}")
    f = _File(fds.file[0])
    msgs, service = out / f"{name}_msgs.py", out / f"{name}_service.py"
    msgs.write_text(f.messages_module())
    service.write_text(f.service_module(out.name, msgs.stem))
    return msgs, service
