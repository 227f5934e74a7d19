"""The containers' seccomp filter against the kernel it ships with: every system call it refuses
exists in that kernel's table (a misspelt name would refuse nothing), and the built kernel has no
vsock loopback transport (a container's path to the init's API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from init.services.pod import seccomp, spec
from onebuild.kernel import kconfig, source
from tests.fixtures.paths import TARGET


def _syscalls(tree: Path) -> set[str]:
    table = tree / "arch/x86/entry/syscalls/syscall_64.tbl"
    rows = [line.split() for line in table.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return {row[2] for row in rows if row[1] in ("common", "64")}


@pytest.mark.host
def test_every_refused_call_exists_in_the_shipped_kernel() -> None:
    known = _syscalls(source.ensure_source())
    refused = {n for r in seccomp.REFUSED for n in r.names} | {"clone", "clone3", "socket"}
    assert refused - known == set()
    # What the profile lets through for our default capabilities is the kernel's table less
    # what is refused: the mount API, namespaces, keyrings and modules among the refused.
    names = set(seccomp.refused_names(spec.CAPABILITIES))
    assert {"mount", "unshare", "setns", "keyctl", "add_key", "init_module", "bpf",
            "open_by_handle_at", "userfaultfd", "io_uring_setup", "kexec_load"} <= names
    assert "chroot" not in names and "ptrace" not in names  # Docker allows both by default


def test_the_built_kernel_has_no_vsock_loopback() -> None:
    built = TARGET / "kernel.config"
    if not built.exists():
        pytest.fail("target/kernel.config missing: run `make kernel` first")
    config = kconfig.parse_config(built.read_text())
    assert config.get("CONFIG_VSOCKETS_LOOPBACK", "n") == "n"
    assert config["CONFIG_VIRTIO_VSOCKETS"] == "y"
    # Only the x86-64 ABI: the filter lists no other architecture.
    assert config.get("CONFIG_IA32_EMULATION", "n") == "n"
    assert config.get("CONFIG_X86_X32_ABI", "n") == "n"
