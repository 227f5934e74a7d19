"""Local mode's API address: by default a 0600 unix socket in the data directory, never a TCP port
that every user and container of the host could reach; TCP only when asked."""

from __future__ import annotations

import stat
from pathlib import Path

from init import config
from init.api import listeners


def test_the_default_is_a_unix_socket_in_the_data_directory(tmp_path: Path) -> None:
    cfg = config.from_args(config.local_parser().parse_args(["--data-dir", str(tmp_path)]))
    assert cfg.listen == f"unix:{tmp_path.resolve() / 'api.sock'}"
    listener = listeners.bind(cfg.listen)
    try:
        mode = (tmp_path / "api.sock").stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    finally:
        listener.close()


def test_tcp_only_when_asked(tmp_path: Path) -> None:
    cfg = config.from_args(config.local_parser().parse_args(
        ["--data-dir", str(tmp_path), "--listen", "tcp:127.0.0.1:0"]))
    assert cfg.listen == "tcp:127.0.0.1:0"


def test_the_readme_table_shows_the_default() -> None:
    assert "unix:DATA_DIR/api.sock" in config.markdown_table()
    assert "50051" not in config.markdown_table()
