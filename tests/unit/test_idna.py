"""The ASCII-only "idna" codec the frozen init falls back on (it has no unicodedata)."""

from __future__ import annotations

import codecs
import subprocess
import sys

import pytest

from init.system import idna


@pytest.mark.parametrize("name", ["registry-1.docker.io", "localhost", "a.b.",
                                  "xn--bcher-kva.example", "x" * 63 + ".io"])
def test_ascii_names_encode_as_the_stdlib_codec_does(name: str) -> None:
    assert idna.encode(name) == codecs.lookup("idna").encode(name)


@pytest.mark.parametrize("name, message", [
    ("bücher.example", "not ASCII: give its punycode"),
    ("a..b", "label empty"),
    (".a", "label empty"),
    ("x" * 64 + ".io", "longer than 63"),
])
def test_bad_names_are_clear_errors(name: str, message: str) -> None:
    with pytest.raises(UnicodeError, match=message):
        idna.encode(name)


def test_decode_keeps_ascii_and_punycode_as_is() -> None:
    assert idna.decode(b"xn--bcher-kva.example") == ("xn--bcher-kva.example", 21)
    with pytest.raises(UnicodeError):
        idna.decode(b"\xff")


def test_it_stands_in_only_where_the_stdlib_codec_cannot_load() -> None:
    """In an interpreter where stringprep (hence the stdlib codec) cannot import, as in the
    frozen init, socket and ssl get this codec; elsewhere the stdlib's is found first."""
    code = ("import sys\n"
            "sys.modules['unicodedata'] = None\n"  # what the trimmed libpython lacks
            "import codecs, socket\n"
            "from init.system import idna\n"
            "try:\n"
            "    'localhost'.encode('idna')\n"
            "except LookupError:\n"
            "    pass\n"
            "else:\n"
            "    raise SystemExit('the stdlib codec loaded without unicodedata')\n"
            "idna.register()\n"
            "assert codecs.lookup('idna').encode is idna.encode\n"
            "print(socket.getaddrinfo('localhost', 80, type=socket.SOCK_STREAM)[0][4][1])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "80", result.stderr
    assert codecs.lookup("idna").encode is not idna.encode
