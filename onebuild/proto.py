"""Generate the gRPC stubs from proto/one.proto with grpcio-tools (never edited by hand).

Output is the package `oneproto/` at the repository root (git-ignored). For the host (onectl,
tests): `one_pb2` (protobuf messages), `one_grpc` (grpclib stubs) and `one_pb2_grpc` (grpcio).
For the guest, which never imports google.protobuf: `one_msgs` (plain classes for
init/api/wire.py) and `one_service` (the grpclib service base over them), written by
onebuild/protomsgs.py from protoc's descriptor set. protoc writes imports after the proto's
include path, so the proto is staged as `oneproto/one.proto` and the generated modules import
`from oneproto import one_pb2`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from onebuild import paths, protomsgs
from onebuild.tools import run, step

PROTO = paths.ROOT / "proto" / "one.proto"
OUT = paths.ROOT / "oneproto"
PROTOC_MODULES = ("one_pb2.py", "one_pb2.pyi", "one_grpc.py", "one_pb2_grpc.py")
GUEST_MODULES = ("one_msgs.py", "one_service.py")
MODULES = (*PROTOC_MODULES, *GUEST_MODULES)


def generate() -> None:
    with step("Generating gRPC stubs from proto/one.proto"), \
            tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "oneproto"
        staged.mkdir()
        shutil.copyfile(PROTO, staged / "one.proto")
        gen = Path(tmp) / "gen"
        gen.mkdir()
        plugin = Path(sys.executable).parent / "protoc-gen-grpclib_python"
        run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp}",
             f"--plugin=protoc-gen-grpclib_python={plugin}",
             f"--python_out={gen}", f"--pyi_out={gen}", f"--grpc_python_out={gen}",
             f"--grpclib_python_out={gen}", f"--descriptor_set_out={gen}/one.desc",
             "oneproto/one.proto"], quiet=True)
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir()
        (OUT / "__init__.py").write_text('"""Generated from proto/one.proto by `doit proto`."""\n')
        for name in PROTOC_MODULES:
            shutil.copyfile(gen / "oneproto" / name, OUT / name)
        protomsgs.generate(gen / "one.desc", OUT, "one")
