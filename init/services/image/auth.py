"""Registry credentials (from a file, never the command line) and `WWW-Authenticate` challenges.

The credentials file has Docker's `config.json` shape, so an existing one can be reused:
`{"auths": {"127.0.0.1:5000": {"auth": base64("user:password")}}}` or with `username` and
`password` fields. Keys may be written as URLs (`https://host:port/v1/`); they are matched by
host[:port].
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from init.services.image.reference import DEFAULT_REGISTRY, DOCKER_HUB_API

LOG = logging.getLogger("mvirt-one")


@dataclass(frozen=True)
class Credential:
    username: str
    password: str

    def __repr__(self) -> str:  # never in a log by accident
        return f"Credential(username={self.username!r}, password=<hidden>)"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


Credentials = Mapping[str, Credential]  # registry host[:port] → credential


def _registry_key(key: str) -> str:
    key = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    if key in ("index.docker.io", DOCKER_HUB_API):
        return DEFAULT_REGISTRY
    return key


class CredentialsError(ValueError):
    """The credentials file exists but cannot be used; the message names the file."""


def load_credentials(path: Path | None) -> dict[str, Credential]:
    """The file's credentials; a missing file means none. Bad content raises CredentialsError."""
    if path is None:
        return {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CredentialsError(f"registry credentials {path}: {e.strerror}") from None
    try:
        doc = json.loads(text)
        auths = doc.get("auths", {})
        if not isinstance(auths, dict):
            raise ValueError("'auths' is not an object")
    except (ValueError, AttributeError) as e:
        raise CredentialsError(f"registry credentials {path}: not a config.json ({e})") from None
    creds: dict[str, Credential] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, colon, password = base64.b64decode(entry["auth"], validate=True) \
                    .decode().partition(":")
                if not colon:
                    raise ValueError("no ':'")
            except (binascii.Error, ValueError, TypeError):
                raise CredentialsError(f"registry credentials {path}: the 'auth' of {key!r} is "
                                       "not base64 of user:password") from None
        if isinstance(user, str) and isinstance(password, str):
            creds[_registry_key(key)] = Credential(user, password)
    return creds


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """`WWW-Authenticate` values → challenges (one header may carry several schemes)."""
    challenges: list[Challenge] = []
    for header in headers:
        text = header.strip()
        while text:
            m = re.match(r"([A-Za-z][\w-]*)\s*", text)
            if not m:
                break
            scheme = m.group(1).lower()
            text = text[m.end():]
            params: dict[str, str] = {}
            while True:
                p = _PARAM.match(text)
                # A parameter is `name=value`; a bare word is the next challenge's scheme.
                if not p or not p.group(0).strip():
                    break
                value = p.group(2) if p.group(2) is not None else p.group(3)
                params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
                text = text[p.end():]
            challenges.append(Challenge(scheme, params))
            text = text.lstrip(", ")
    return challenges
