"""Generate the gRPC stubs from proto/one.proto with grpcio-tools (never edited by hand).

Output is the package `oneproto/` at the repository root (git-ignored): `one_pb2` (messages),
`one_grpc` (grpclib, the guest's server) and `one_pb2_grpc` (grpcio, host-side clients and the
wire-compatibility tests). protoc writes imports after the proto's include path, so the proto is
staged as `oneproto/one.proto` and the generated modules import `from oneproto import one_pb2`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from onebuild import paths
from onebuild.tools import run, step

PROTO = paths.ROOT / "proto" / "one.proto"
OUT = paths.ROOT / "oneproto"
MODULES = ("one_pb2.py", "one_pb2.pyi", "one_grpc.py", "one_pb2_grpc.py")


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
             f"--grpclib_python_out={gen}", "oneproto/one.proto"], quiet=True)
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir()
        (OUT / "__init__.py").write_text('"""Generated from proto/one.proto by `doit proto`."""\n')
        for name in MODULES:
            shutil.copyfile(gen / "oneproto" / name, OUT / name)
