"""Image references: Docker's short-name rules and clear errors. Parsing only — nothing here
resolves or contacts docker.io."""

from __future__ import annotations

import pytest

from init.services.image.errors import InvalidReference
from init.services.image.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("alpine", "docker.io", "library/alpine", "latest", None),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
    ("index.docker.io/library/alpine", "docker.io", "library/alpine", "latest", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app", "localhost:5000", "app", "latest", None),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
    (f"alpine@{D}", "docker.io", "library/alpine", None, D),
    (f"10.0.2.2:5000/app:1.0@{D}", "10.0.2.2:5000", "app", "1.0", D),
    ("Registry.Example.com/app", "Registry.Example.com", "app", "latest", None),
    ("a/b__c/d-e.f_g", "docker.io", "a/b__c/d-e.f_g", "latest", None),
])
def test_valid(text: str, registry: str, repository: str, tag: str | None,
               digest: str | None) -> None:
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag,
                                                                   digest)


def test_normalised_text_and_hosts() -> None:
    assert str(parse("alpine")) == "docker.io/library/alpine:latest"
    assert parse("alpine").api_host == "registry-1.docker.io"
    assert parse("[::1]:5000/app").host == "::1"
    assert parse("127.0.0.1:5000/app").host == "127.0.0.1"
    ref = parse(f"127.0.0.1:5000/app:1@{D}")
    assert ref.manifest_ref == D  # the digest wins over the tag
    assert str(ref) == f"127.0.0.1:5000/app:1@{D}"


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("Alpine", "lower case"),
    ("library/Alpine:1", "lower case"),
    ("alpine:", "invalid tag"),
    ("alpine:-x", "invalid tag"),
    ("alpine:" + "x" * 129, "invalid tag"),
    ("alpine@sha256:abc", "64"),
    ("alpine@md5:" + "a" * 32, "sha256"),
    ("alpine@sha256:" + "A" * 64, "hex"),
    ("alpine latest", "white space"),
    ("a//b", "invalid repository"),
    ("a/../b", "invalid repository"),
    ("127.0.0.1:5000/", "no repository"),
    ("bad_host.example:5000/app", "invalid registry"),
    ("-x/app", "invalid repository"),
    ("x" * 300, "longer than"),
])
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message) as info:
        parse(text)
    assert isinstance(info.value, ValueError)  # the API maps it to INVALID_ARGUMENT
