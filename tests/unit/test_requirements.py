"""requirements.txt pins every package of the build venv by version and by the sha256 of its
wheel, and scripts/bootstrap.sh installs it with pip's --require-hashes."""

import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def requirements(text: str) -> list[tuple[str, str, list[str]]]:
    """(name, version, hashes) of each requirement, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        m = PIN.match(words[0])
        assert m, f"requirements.txt: {words[0]!r} is not pinned as NAME==VERSION"
        out.append((m[1], m[2], words[1:]))
    return out


def unhashed(text: str) -> list[str]:
    """The pins of `text` without a well-formed sha256 hash (or with anything else after them)."""
    return [f"{name}=={version}" for name, version, options in requirements(text)
            if not options or not all(HASH.match(o) for o in options)]


def test_every_pin_has_a_hash() -> None:
    pins = requirements((ROOT / "requirements.txt").read_text())
    assert len(pins) > 20
    missing = unhashed((ROOT / "requirements.txt").read_text())
    assert not missing, f"pinned without --hash=sha256:… (pip download --no-deps PKG==VER; " \
        f"pip hash FILE): {', '.join(missing)}"


def test_an_unhashed_pin_is_found() -> None:
    text = "doit==0.37.0 \\\n    --hash=sha256:" + "a" * 64 + "\n# c\ngrpcio==1.85.3\n" \
        "h2==4.4.1 --hash=md5:00\n"
    assert unhashed(text) == ["grpcio==1.85.3", "h2==4.4.1"]


def test_bootstrap_requires_hashes() -> None:
    script = (ROOT / "scripts/bootstrap.sh").read_text()
    installs = [line for line in script.splitlines() if "-r requirements.txt" in line]
    assert installs and all("--require-hashes" in line for line in installs)


def test_the_venv_has_the_pinned_versions() -> None:
    """The venv running the tests is the one requirements.txt describes (a new pin rebuilds it)."""
    for name, version, _ in requirements((ROOT / "requirements.txt").read_text()):
        assert importlib.metadata.version(name) == version, name
