"""Test certificates made with openssl: a private CA and a server certificate it signed."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str = "mvirt-one test site CA") -> Path:
    """directory/ca.pem (and ca.key): a self-signed P-256 CA valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", f"/CN={name}", "-keyout", directory / "ca.key",
            "-out", directory / "ca.pem")
    return directory / "ca.pem"


def make_server_cert(directory: Path) -> Path:
    """directory/server.pem (and server.key), signed by directory/ca.pem, for localhost and
    127.0.0.1."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=registry.test", "-keyout", directory / "server.key",
            "-out", directory / "server.csr")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", directory / "server.csr", "-CA", directory / "ca.pem",
            "-CAkey", directory / "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", directory / "san.ext", "-out", directory / "server.pem")
    return directory / "server.pem"
