"""Credentials from a file (config.json shape) and WWW-Authenticate challenges."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from init.services.image.auth import (
    Credential,
    CredentialsError,
    load_credentials,
    parse_challenges,
)


def test_bearer_challenge() -> None:
    [ch] = parse_challenges(['Bearer realm="https://auth.example/token",service="registry.'
                             'example",scope="repository:a/b:pull,push"'])
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "registry.example",
                         "scope": "repository:a/b:pull,push"}


def test_several_challenges_and_unquoted_values() -> None:
    chs = parse_challenges(['Basic realm="x y", Bearer realm=http://h/t,service=s',
                            'Negotiate'])
    assert [(c.scheme, c.params) for c in chs] == [
        ("basic", {"realm": "x y"}), ("bearer", {"realm": "http://h/t", "service": "s"}),
        ("negotiate", {})]


def test_escaped_quotes() -> None:
    [ch] = parse_challenges([r'Bearer realm="a\"b"'])
    assert ch.params["realm"] == 'a"b'


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": base64.b64encode(b"u:p:with:colons").decode()},
        "https://index.docker.io/v1/": {"username": "hub", "password": "secret"},
        "registry.example": {"identitytoken": "ignored"},
    }}))
    creds = load_credentials(path)
    assert creds == {"127.0.0.1:5000": Credential("u", "p:with:colons"),
                     "docker.io": Credential("hub", "secret")}
    assert "secret" not in repr(creds)
    assert creds["docker.io"].basic() == "Basic " + base64.b64encode(b"hub:secret").decode()


def test_missing_file_means_no_credentials(tmp_path: Path) -> None:
    assert load_credentials(tmp_path / "absent.json") == {}
    assert load_credentials(None) == {}


@pytest.mark.parametrize("content", [
    "not json", '{"auths": []}', '{"auths": {"h": {"auth": "!"}}}',
    '{"auths": {"h": {"auth": "dXNlcg=="}}}'])
def test_bad_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(CredentialsError, match=str(path)):
        load_credentials(path)
