"""The guest's message generator (onebuild/protomsgs.py) refuses, by name, what its codec does
not carry, instead of writing classes that would read or write other bytes than protobuf."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from onebuild import protomsgs
from onebuild.tools import BuildError

HEAD = 'syntax = "proto3";\npackage t;\n'


def _generate(tmp_path: Path, source: str) -> Path:
    (tmp_path / "t.proto").write_text(source)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
                    f"--descriptor_set_out={tmp_path / 't.desc'}", "t.proto"], check=True)
    out = tmp_path / "gen"
    out.mkdir()
    return protomsgs.generate(tmp_path / "t.desc", out, "t")[0]


@pytest.mark.parametrize(("source", "error"), [
    ('syntax = "proto2";\nmessage M { optional int32 a = 1; }', "only proto3"),
    (HEAD + "message M { message N { int32 a = 1; } N n = 1; }", "nested messages"),
    (HEAD + "message M { enum E { E_0 = 0; } E e = 1; }", "nested enums"),
    (HEAD + "message M { optional int32 a = 1; }", "`optional`"),
    (HEAD + "message M { repeated int32 a = 1 [packed = false]; }", "packed = false"),
    (HEAD + "message M { int32 FIELDS = 1; }", "cannot be an attribute"),
    (HEAD + "message M { int32 from = 1; }", "cannot be an attribute"),
])
def test_what_the_codec_does_not_carry_is_refused(tmp_path: Path, source: str, error: str
                                                  ) -> None:
    with pytest.raises(BuildError, match=error):
        _generate(tmp_path, source)


def test_generated_module_is_typed_python_that_round_trips(tmp_path: Path) -> None:
    msgs = _generate(tmp_path, HEAD + "enum E { E_0 = 0; E_1 = 1; }\n"
                     "message M { repeated E es = 1; map<string, M> sub = 2; "
                     "oneof o { string s = 3; M m = 4; } }")
    namespace: dict[str, object] = {}
    exec(compile(msgs.read_text(), str(msgs), "exec"), namespace)
    from init.api import wire

    cls = namespace["M"]
    assert isinstance(cls, type) and issubclass(cls, wire.Message)
    value = cls(es=[1, 7], sub={"a": cls(s="x")}, m=cls())
    assert value.WhichOneof("o") == "m"
    assert wire.decode(wire.encode(value), cls) == value
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(msgs)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
