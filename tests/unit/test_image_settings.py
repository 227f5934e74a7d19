"""The image service's settings: insecure registries and the credentials file (never secrets on
the command line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from init import config


def test_cmdline() -> None:
    cfg = config.from_cmdline("one.insecure_registries=10.0.2.2:5000,reg.lan,[fd00::1]:5000 "
                              "one.registry_auth=/etc/auth.json")
    assert cfg.insecure_registries == ("10.0.2.2:5000", "reg.lan", "[fd00::1]:5000")
    assert cfg.registry_auth == Path("/etc/auth.json")
    assert cfg.unknown == ()


def test_cmdline_defaults() -> None:
    cfg = config.from_cmdline("")
    assert cfg.insecure_registries == ()
    assert cfg.registry_auth == Path("/etc/mvirt-one/registry-auth.json")


@pytest.mark.parametrize("value", ["http://reg:5000", "reg:port", "reg_x", "reg/x"])
def test_cmdline_bad_registry(value: str) -> None:
    with pytest.raises(config.ConfigError, match="HOST:PORT"):
        config.from_cmdline(f"one.insecure_registries={value}")


def test_local_flags(tmp_path: Path) -> None:
    args = config.local_parser().parse_args([
        "--data-dir", str(tmp_path), "--insecure-registry", "10.0.0.5:5000",
        "--insecure-registry", "reg.lan:80", "--registry-auth", str(tmp_path / "auth.json")])
    cfg = config.from_args(args)
    assert cfg.insecure_registries == ("10.0.0.5:5000", "reg.lan:80")
    assert cfg.registry_auth == tmp_path / "auth.json"
    plain = config.from_args(config.local_parser().parse_args(["--data-dir", str(tmp_path)]))
    assert plain.insecure_registries == () and plain.registry_auth is None
