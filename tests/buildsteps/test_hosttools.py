"""Host tools: vhost-device-vsock fetched from sid into the cache, OVMF, and the private apt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from onebuild import hosttools, paths
from onebuild.tools import BuildError

SOURCES = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "debian.sources"
    path.write_text(SOURCES)
    monkeypatch.setattr(hosttools, "SYSTEM_SOURCES", path)
    monkeypatch.delenv(hosttools.MIRROR_ENV, raising=False)
    return path


def test_mirror_is_read_from_the_system_sources(sources: Path) -> None:
    assert hosttools.debian_mirror() == "http://mirror.example/debian"


def test_deb_src_lines_mirror_every_enabled_suite(sources: Path) -> None:
    key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
    assert hosttools.bookworm_source_lines() == [
        f"deb-src {key} http://mirror.example/debian bookworm main",
        f"deb-src {key} http://mirror.example/debian bookworm-updates main",
        f"deb-src {key} http://mirror.example/debian-security bookworm-security main",
    ]


def test_missing_sources_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosttools, "SYSTEM_SOURCES", tmp_path / "absent.sources")
    monkeypatch.delenv(hosttools.MIRROR_ENV, raising=False)
    with pytest.raises(BuildError, match=hosttools.MIRROR_ENV):
        hosttools.debian_mirror()
    monkeypatch.setenv(hosttools.MIRROR_ENV, "http://mirror.example/debian")
    assert hosttools.debian_mirror() == "http://mirror.example/debian"


def test_private_apt_reads_no_system_sources(tmp_path: Path) -> None:
    apt = hosttools.PrivateApt(tmp_path, ("deb-src [x] http://mirror.example/debian sid main",))
    apt.prepare()
    options = apt.options()
    assert f"Dir::Etc::sourcelist={tmp_path / 'sources.list'}" in options
    assert f"Dir::Etc::sourceparts={tmp_path / 'sources.list.d'}" in options
    assert f"Dir::State::Lists={tmp_path / 'lists'}" in options
    assert list((tmp_path / "sources.list.d").iterdir()) == []
    assert apt.sources_list.read_text() == "deb-src [x] http://mirror.example/debian sid main\n"


@pytest.mark.host
def test_vhost_device_vsock_is_fetched_and_runs() -> None:
    binary = hosttools.fetch_vhost_device_vsock()
    assert binary.is_relative_to(paths.cache_dir() / "tools")
    assert binary.name == "vhost-device-vsock"
    proc = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--vm" in proc.stdout  # the option the VM tests start it with
    # A second call is a cache hit: the same file, no network.
    assert hosttools.fetch_vhost_device_vsock() == binary
    assert hosttools.vhost_device_vsock().is_file()


@pytest.mark.host
def test_sid_is_never_added_to_the_system_sources() -> None:
    hosttools.fetch_vhost_device_vsock()
    system = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").iterdir()]
    for path in system:
        if path.is_file():
            assert " sid" not in path.read_text() and "Suites: sid" not in path.read_text(), path
