"""OpenSSL stays out of the boot imports and comes back whole with load(): asyncio's TLS streams
work and hashlib hashes with OpenSSL again. Each case runs in a fresh interpreter, as the init
starts: this test process has OpenSSL loaded already."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.paths import ROOT


def _run(code: str, tmp_path: Path) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_boot_imports_leave_libcrypto_unmapped(tmp_path: Path) -> None:
    out = _run("""
        import sys
        import init.__main__  # what the init imports before its first line
        maps = open("/proc/self/maps").read()
        print("libcrypto" in maps, "libssl" in maps, "_ssl" in sys.modules,
              sys.modules["asyncio.base_events"].ssl)
        import ssl  # outside hidden(): importable as ever
        print(ssl.OPENSSL_VERSION.split()[0])
    """, tmp_path)
    assert out.split("\n")[:2] == ["False False False None", "OpenSSL"], out


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return key, cert


@pytest.mark.parametrize("load", [True, False], ids=["loaded", "never-loaded"])
def test_load_gives_asyncio_tls_and_openssl_hashes_back(tmp_path: Path, load: bool) -> None:
    key, cert = _certificate(tmp_path)
    out = _run(f"""
        from init import openssl
        with openssl.hidden():  # as the init's boot imports them: without OpenSSL
            import asyncio, hashlib
        import ssl  # what the registry client does (tls.py)
        if {load}:
            openssl.load()
        print(hashlib.sha256.__module__, hashlib.new("sha256", b"x").hexdigest()[:8])

        async def main():
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain({str(cert)!r}, {str(key)!r})
            async def echo(reader, writer):
                writer.write(await reader.readline())
                await writer.drain()
                writer.close()
            server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
            port = server.sockets[0].getsockname()[1]
            client_ctx = ssl.create_default_context(cafile={str(cert)!r})
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                           server_hostname="localhost")
            writer.write(b"over tls\\n")
            print((await reader.readline()).decode().strip())
            writer.close()
            server.close()
        try:
            asyncio.run(main())
        except Exception as e:
            print("failed:", type(e).__name__, e)
    """, tmp_path)
    lines = out.splitlines()
    if load:
        assert lines == ["_hashlib 2d711642", "over tls"], out
    else:
        # What load() is for: asyncio imported without ssl has no TLS streams.
        assert lines[0] == "_sha256 2d711642" and lines[1].startswith("failed:"), out
