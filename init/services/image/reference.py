"""Image references: `[registry[:port]/]repository[:tag][@algorithm:hex]`, with Docker's rules.

Parsing only; nothing here touches the network. Docker's short names apply: a first component
without a `.` or `:` (and not `localhost`) is part of the repository, so `alpine` means
`docker.io/library/alpine:latest`. The grammar follows distribution's `reference` package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from init.services.image.errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# docker.io is a name, not a host: its API lives here (used only when really pulling from it).
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")

_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(
    rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")
MAX_NAME = 255


def check_digest(digest: str, what: str = "digest") -> str:
    """`digest` if it is `sha256:<64 hex>` or `sha512:<128 hex>`; InvalidReference otherwise."""
    algorithm, sep, hexpart = digest.partition(":")
    length = DIGEST_ALGORITHMS.get(algorithm)
    if not sep or length is None:
        raise InvalidReference(f"{what} {digest!r}: expected sha256:<64 hex digits>")
    if len(hexpart) != length or not _HEX.fullmatch(hexpart):
        raise InvalidReference(f"{what} {digest!r}: expected {algorithm}:<{length} lower-case "
                               "hex digits>")
    return digest


def is_digest(text: str) -> bool:
    try:
        check_digest(text)
    except InvalidReference:
        return False
    return True


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "127.0.0.1:5000", "[::1]:5000"
    repository: str  # "library/alpine"
    tag: str | None  # None when only a digest was given
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """host[:port] to connect to for the registry API."""
        return DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def host(self) -> str:
        """The registry's host without port or brackets (for the loopback/insecure decision)."""
        host = self.api_host
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry for: the digest if given (it wins over a tag), else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse and normalise a reference; InvalidReference (a ValueError) says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference("image reference is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"image reference {text!r} contains white space")
    rest, at, digest = text.partition("@")
    digest_part: str | None = None
    if at:
        digest_part = check_digest(digest, f"image reference {text!r}: digest")
    # A tag is what follows the last ':' after the last '/' (a ':' before it is a port).
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"image reference {text!r}: invalid tag {tag!r} (letters, "
                                   "digits, '_', '.', '-'; at most 128; not starting with . or -)")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, remainder
        if not _REGISTRY.fullmatch(registry):
            raise InvalidReference(f"image reference {text!r}: invalid registry {registry!r}")
    else:
        registry, path = DEFAULT_REGISTRY, rest
    if registry in _HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if not path:
        raise InvalidReference(f"image reference {text!r}: no repository name")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            hint = " (repository names are lower case)" if component.lower() != component else ""
            raise InvalidReference(
                f"image reference {text!r}: invalid repository component {component!r}{hint}")
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > MAX_NAME:
        raise InvalidReference(f"image reference {text!r}: name longer than {MAX_NAME} characters")
    if tag is None and digest_part is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest_part)
