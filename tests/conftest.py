"""The fixtures every test can ask for by name, from the modules under tests/fixtures."""

import importlib.util

# The gRPC stubs are generated and git-ignored: say how to make them, once, instead of failing
# every module that imports them.
if importlib.util.find_spec("oneproto") is None:
    raise ImportError("oneproto/ missing: generate the gRPC stubs with `.venv/bin/doit proto`")

pytest_plugins = [
    "tests.fixtures.vm",
    "tests.fixtures.images.fixtures",
    "tests.fixtures.pods",
]
