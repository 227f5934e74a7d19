from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from init import config


def test_cmdline_keys_and_defaults() -> None:
    cfg = config.from_cmdline('console=ttyS0 one.port=2000 one.log=debug quiet '
                              'one.hostname="pod-a" one.bogus=1')
    assert cfg.mode == "pid1"
    assert cfg.listen == "vsock:2000"
    assert cfg.ready_port == 1025
    assert cfg.log_level == "debug"
    assert cfg.hostname == "pod-a"
    assert cfg.unknown == ("bogus",)
    assert config.from_cmdline("console=ttyS0").listen == "vsock:1024"


@pytest.mark.parametrize("text, needle", [
    ("one.port=abc", "one.port='abc': not a port number"),
    ("one.port=0", "out of range"),
    ("one.log=loud", "use one of debug"),
    ("one.grace=-1", "must not be negative"),
])
def test_bad_cmdline_values_name_the_setting(text: str, needle: str) -> None:
    with pytest.raises(config.ConfigError, match=needle.replace("(", r"\(")):
        config.from_cmdline(text)


def test_unbalanced_quote_still_parses() -> None:
    assert config.parse_cmdline('one.hostname="a b one.port=7') == {"hostname": '"a',
                                                                     "port": "7"}


def test_local_flags(tmp_path: Path) -> None:
    args = config.local_parser().parse_args(["--data-dir", str(tmp_path), "--listen",
                                             "unix:/run/x.sock"])
    cfg = config.from_args(args)
    assert cfg.mode == "local" and cfg.listen == "unix:/run/x.sock"
    with pytest.raises(config.ConfigError, match="--listen"):
        config.from_args(config.local_parser().parse_args(["--data-dir", "d", "--listen",
                                                           "vsock:3"]))
    with pytest.raises(config.ConfigError, match="--data-dir"):
        config.from_args(config.local_parser().parse_args([]))


def test_readme_configuration_table_is_the_settings_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert config.markdown_table() in readme, \
        "README's configuration table differs from init/config.py SETTINGS: paste " \
        "`python -c 'from init import config; print(config.markdown_table())'`"


# Every one.KEY the README documents, with a value that is not its default. Written out here,
# not derived from SETTINGS, so that a key the reader drops, misnames or ignores is caught.
NON_DEFAULT_VALUES = {
    "port": "2000", "ready_port": "2001", "log": "debug", "runtime": "/usr/bin/runc",
    "hostname": "pod-b", "grace": "3", "data_dir": "/data", "data_disk": "/dev/vdb",
    "data_size": "1G", "dhcp_timeout": "7", "ip": "eth0:off", "dns": "192.0.2.53",
    "search": "example.org", "insecure_registries": "reg.example:5000",
    "registry_auth": "/etc/auth.json", "ca_file": "/etc/extra-ca.pem",
    "memory_reserve": "48M", "pids_reserve": "64", "max_pulls": "2",
    "log_max_size": "1M", "log_max_files": "3",
}


def test_every_known_key_and_flag_is_parsed_once() -> None:
    keys = [s.key for s in config.SETTINGS if s.key]
    flags = [s.flag for s in config.SETTINGS if s.flag]
    assert len(keys) == len(set(keys)) and len(flags) == len(set(flags))
    assert sorted(config.KNOWN_KEYS) == sorted(NON_DEFAULT_VALUES)
    # Each key, given on the command line, is known and lands in its own field.
    line = " ".join(f"one.{k}={v}" for k, v in NON_DEFAULT_VALUES.items())
    given = config.from_cmdline(line)
    assert given.unknown == ()
    plain = config.from_cmdline("")
    changed = {f.name for f in dataclasses.fields(given)
               if getattr(given, f.name) != getattr(plain, f.name)}
    by_key = {s.key: s.field for s in config.SETTINGS if s.key}
    assert changed == {by_key[k] for k in NON_DEFAULT_VALUES} | {"hostname_explicit"}
    assert (given.listen, given.ready_port, given.log_level) == ("vsock:2000", 2001, "debug")
    assert (given.shutdown_grace, given.net_wait, given.data_size) == (3.0, 7.0, "1G")
    assert given.ca_files == (Path("/etc/extra-ca.pem"),)
    assert (given.memory_reserve, given.pids_reserve) == (48 << 20, 64)
    local = config.from_args(config.local_parser().parse_args(["--data-dir", "/tmp/x"]))
    assert local.hooks_dir == Path("/tmp/x/boot.d") and local.registry_auth is None


def test_the_vm_default_runtime_is_the_one_the_image_ships() -> None:
    from onebuild import initramfs

    assert config.default("runtime") == Path("/" + initramfs.OCI_RUNTIME_LINK)
    assert config.default("runtime", "local") == Path("/usr/bin/crun")
