"""A client for the OCI distribution API v2: manifests and blobs, auth, redirects, retries.

Blocking `http.client` run in a worker thread per pull, not asyncio streams: the stdlib client
already does HTTP/1.1 framing (chunked, keep-alive, HEAD), TLS is `ssl` on a socket, and a pull is
sequential work whose other half (hashing, decompressing, writing files, tar) blocks anyway and so
belongs in a thread too. One thread per pull keeps the event loop (the API) responsive and memory
constant: bodies are read in fixed chunks straight into files.

Every registry is tried over HTTPS, verified (see tls.py); loopback registries (as Docker does)
and those configured insecure fall back to plain HTTP when they do not speak TLS. No proxy
variables are consulted: the init talks to the registry it was told about.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

from init.services.image import manifest as mf
from init.services.image import tls
from init.services.image.auth import Challenge, Credential, parse_challenges
from init.services.image.connections import Cancel, Connections
from init.services.image.errors import (
    AuthenticationError,
    DigestMismatch,
    NotInRegistry,
    RegistryError,
    UnsupportedImage,
)
from init.services.image.reference import Reference, is_digest

LOG = logging.getLogger("mvirt-one")

USER_AGENT = "mvirt-one-init"
CHUNK = 256 << 10  # read size: large enough for few syscalls, small enough to be constant memory
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 30.0
# A transfer that moves fewer bytes than this in this many seconds has stalled (a socket that
# sends nothing at all for `timeout` seconds fails sooner, on its own).
STALL_WINDOW = 60.0
STALL_BYTES = 16 << 10


class Stalled(OSError):
    """A body arriving too slowly: handled as a broken connection is (a blob resumes)."""


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_use_plain_http(ref: Reference, insecure: Collection[str]) -> bool:
    """Loopback registries and those named insecure (by host:port or by host) may fall back to
    plain HTTP when they do not speak TLS."""
    return is_loopback(ref.host) or ref.api_host in insecure or ref.registry in insecure \
        or ref.host in insecure


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _error_text(resp: http.client.HTTPResponse) -> str:
    """A registry's error body ({"errors": [{code, message}]}) made readable; never large."""
    body = resp.read(64 << 10)
    _drain(resp)
    try:
        errors = json.loads(body).get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                         for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        text = body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {resp.status}" + (f" ({text})" if text else "")


def _range_start(content_range: str) -> int | None:
    """START of `bytes START-END/TOTAL`; None for anything else."""
    words = content_range.split()
    first = words[1].split("-")[0] if len(words) == 2 and words[0] == "bytes" else ""
    return int(first) if first.isdigit() else None


def _drain(resp: http.client.HTTPResponse) -> None:
    """Read what is left (bounded) so the connection can be reused; otherwise drop it."""
    try:
        for _ in range(64):
            if not resp.read(CHUNK):
                return
    except (OSError, http.client.HTTPException):
        pass
    resp.close()


class RegistryClient:
    """One repository on one registry, used by one thread. Call `close` when done."""

    def __init__(self, ref: Reference, *, insecure: Collection[str] = (),
                 credential: Credential | None = None, ca_files: Sequence[Path] = (),
                 cancel: Cancel | None = None, timeout: float = 30.0, attempts: int = 4,
                 backoff: float = 0.5, stall_window: float = STALL_WINDOW,
                 stall_bytes: int = STALL_BYTES) -> None:
        self.ref = ref
        self.may_use_http = may_use_plain_http(ref, insecure)
        self.scheme = "https"  # "http" once a registry allowed it turned out not to speak TLS
        self._credential = credential
        self._attempts = attempts
        self._backoff = backoff
        self._cancel = cancel or Cancel()
        self._stall = (stall_window, stall_bytes)
        self._conns = Connections(self._cancel, timeout, lambda: tls.context(ca_files))
        self._auth: str | None = None  # the Authorization header value once we have one

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.ref.api_host}/v2/{self.ref.repository}"

    # --- connections and the request loop ----------------------------------------------------

    def close(self) -> None:
        self._conns.close()

    def check_cancelled(self) -> None:
        """PullCancelled once the pulls are cancelled (for the work between transfers)."""
        self._cancel.check()

    def _chunks(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        """A body as it arrives (what is there, not a full CHUNK: progress is seen), failing
        with Stalled when it moves too slowly; ends early if the pulls are cancelled."""
        window, least = self._stall
        since, moved = time.monotonic(), 0
        while chunk := resp.read1(CHUNK):
            yield chunk
            moved += len(chunk)
            now = time.monotonic()
            if now - since >= window:
                if moved < least:
                    raise Stalled(errno.ETIMEDOUT, f"stalled: {moved} bytes in "
                                                   f"{now - since:.0f} s")
                since, moved = now, 0
        # read1 leaves a body read to its end open, and the connection then refuses the next
        # request: mark it done.
        resp.close()

    def _read_body(self, resp: http.client.HTTPResponse, limit: int) -> bytes:
        """At most `limit` bytes of a (small) body."""
        parts: list[bytes] = []
        size = 0
        for chunk in self._chunks(resp):
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        self._cancel.check()
        return b"".join(parts)[:limit]

    def _wait(self, attempt: int, retry_after: str | None = None) -> None:
        delay = self._backoff * 2 ** (attempt - 1)
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        self._cancel.sleep(min(delay, MAX_RETRY_AFTER))

    def _falls_back(self, scheme: str, netloc: str, e: BaseException) -> bool:
        """Whether a failed HTTPS request to the registry means "use plain HTTP" (tls.py)."""
        if not (self.may_use_http and scheme == self.scheme == "https"
                and netloc == self.ref.api_host):
            return False
        no_port = not netloc.rpartition("]")[2].count(":")  # https on 443, http on 80
        return tls.not_tls(e) or (no_port and isinstance(e, ConnectionRefusedError))

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, *,
                authenticate: bool = True) -> http.client.HTTPResponse:
        """Send with retries (connection errors, 429, 5xx), auth challenges and redirects.
        Returns the final response, whatever its status; the caller reads or drains it."""
        attempt = 0
        redirects = 0
        challenged = False
        given_for = urlsplit(url)[:2]  # (scheme, host) the caller's headers are meant for
        while True:
            parts = urlsplit(url)
            if parts.scheme == "https" != self.scheme and parts.netloc == self.ref.api_host:
                url = "http" + url[len("https"):]  # built before the registry fell back
                continue
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            here = (parts.scheme, parts.netloc)
            is_registry = here == (self.scheme, self.ref.api_host)
            # Credentials go only to the host they belong to, over the scheme they were given
            # on: never to a redirect's other host, never down to plain HTTP.
            sent = {"User-Agent": USER_AGENT}
            for key, value in (headers or {}).items():
                if key.lower() != "authorization" or here == given_for:
                    sent[key] = value
            if authenticate and is_registry and self._auth:
                sent["Authorization"] = self._auth
            if parts.scheme not in ("http", "https"):
                raise RegistryError(f"{self.ref.registry}: unsupported URL {url!r}")
            self._cancel.check()
            try:
                conn = self._conns.get(parts.scheme, parts.netloc)
                conn.request(method, path, headers=sent)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self._conns.drop(parts.scheme, parts.netloc)
                self._cancel.check()
                rejected = tls.rejection(e, parts.netloc)
                if rejected is not None:
                    raise rejected from None
                if self._falls_back(parts.scheme, parts.netloc, e):
                    LOG.info("registry %s does not speak TLS: using plain HTTP", parts.netloc)
                    self.scheme = "http"
                    url = "http" + url[len("https"):]
                    continue
                # A kept-alive connection the server closed fails once: not worth a back-off.
                if isinstance(e, http.client.RemoteDisconnected) and attempt == 0:
                    attempt = 1
                    continue
                attempt += 1
                if attempt >= self._attempts:
                    raise RegistryError(f"{parts.netloc}: {_describe(e)} (after {attempt} "
                                        "attempts)") from e
                LOG.warning("registry %s: %s; retrying", parts.netloc, _describe(e))
                self._wait(attempt)
                continue
            if resp.status == 401 and authenticate and is_registry:
                challenges = parse_challenges(resp.headers.get_all("WWW-Authenticate") or [])
                _drain(resp)
                if challenged:
                    raise AuthenticationError(
                        f"{self.ref.registry}: access to {self.ref.repository} denied with the "
                        "credentials given" if self._credential else
                        f"{self.ref.registry}: access to {self.ref.repository} denied "
                        "(credentials needed: add them to the registry credentials file)")
                self._authenticate(challenges)
                challenged = True
                continue
            if resp.status in RETRY_STATUSES:
                retry_after = resp.headers.get("Retry-After")
                text = _error_text(resp)
                attempt += 1
                if attempt >= self._attempts:
                    raise RegistryError(f"{parts.netloc}: {text} (after {attempt} attempts)")
                LOG.warning("registry %s: %s; retrying", parts.netloc, text)
                self._wait(attempt, retry_after)
                continue
            if resp.status in REDIRECTS:
                location = resp.headers.get("Location")
                _drain(resp)
                redirects += 1
                if not location or redirects > MAX_REDIRECTS:
                    raise RegistryError(f"{parts.netloc}: bad or endless redirect for {path}")
                url = urljoin(url, location)
                continue
            return resp

    # --- authentication ----------------------------------------------------------------------

    def _authenticate(self, challenges: list[Challenge]) -> None:
        for ch in challenges:
            if ch.scheme == "bearer" and "realm" in ch.params:
                self._auth = f"Bearer {self._token(ch)}"
                return
        for ch in challenges:
            if ch.scheme == "basic":
                if self._credential is None:
                    raise AuthenticationError(
                        f"{self.ref.registry} requires a user name and password: add them to "
                        "the registry credentials file")
                self._auth = self._credential.basic()
                return
        raise AuthenticationError(f"{self.ref.registry}: unsupported authentication challenge "
                                  f"{[c.scheme for c in challenges]}")

    def _token(self, ch: Challenge) -> str:
        """Anonymous (or, with credentials, basic-authenticated) token for pull access."""
        query = {"scope": ch.params.get("scope") or f"repository:{self.ref.repository}:pull"}
        if "service" in ch.params:
            query["service"] = ch.params["service"]
        realm = ch.params["realm"]
        realm_scheme = urlsplit(realm).scheme
        if realm_scheme not in ("http", "https"):
            raise AuthenticationError(f"{self.ref.registry}: token realm {realm!r} is not a URL")
        if realm_scheme == "http" and self.scheme == "https":
            raise AuthenticationError(f"{self.ref.registry}: token realm {realm} is plain HTTP "
                                      "for an HTTPS registry: refused")
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": self._credential.basic()} if self._credential else {}
        resp = self.request("GET", url, headers, authenticate=False)
        if resp.status != 200:
            text = _error_text(resp)
            raise AuthenticationError(f"{self.ref.registry}: token service {realm} refused "
                                      f"{'the credentials' if self._credential else 'access'}: "
                                      f"{text}")
        try:
            doc = json.loads(self._read_body(resp, 1 << 20))
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"{self.ref.registry}: reading a token from {realm}: "
                                f"{_describe(e)}") from e
        _drain(resp)
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"{self.ref.registry}: token service {realm} gave no token")
        return token

    # --- the API ------------------------------------------------------------------------------

    def resolve(self, reference: str) -> str | None:
        """HEAD a manifest: its digest (Docker-Content-Digest), or None when the registry does
        not say. Costs no body: this is how a second pull of a tag transfers nothing."""
        resp = self.request("HEAD", f"{self.base}/manifests/{reference}", {"Accept": mf.ACCEPT})
        _drain(resp)
        if resp.status == 404:
            raise NotInRegistry(f"{self.ref}: not found in {self.ref.registry}")
        if resp.status != 200:
            raise RegistryError(f"{self.ref.registry}: HEAD manifest {reference}: "
                                f"HTTP {resp.status}")
        digest = resp.headers.get("Docker-Content-Digest")
        if digest is not None and not is_digest(digest):
            # It names files in the store: only what a digest can be, nothing path-like.
            raise RegistryError(f"{self.ref.registry}: malformed Docker-Content-Digest "
                                f"{digest[:100]!r} for {self.ref} (expected sha256:<64 hex> or "
                                "sha512:<128 hex>)")
        return digest

    def manifest(self, reference: str) -> tuple[bytes, str]:
        """(body, Content-Type) of a manifest or index; the caller verifies its digest."""
        resp = self.request("GET", f"{self.base}/manifests/{reference}", {"Accept": mf.ACCEPT})
        if resp.status == 404:
            raise NotInRegistry(f"{self.ref.name}:{reference}: not found in "
                                f"{self.ref.registry} ({_error_text(resp)})")
        if resp.status != 200:
            raise RegistryError(f"{self.ref.registry}: manifest {reference}: {_error_text(resp)}")
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > mf.MAX_MANIFEST:
            _drain(resp)
            raise UnsupportedImage(f"{self.ref}: manifest of {length} bytes is too large")
        try:
            body = self._read_body(resp, mf.MAX_MANIFEST + 1)
            _drain(resp)
        except (OSError, http.client.HTTPException) as e:
            self._conns.drop(*urlsplit(self.base)[:2])
            raise RegistryError(f"{self.ref.registry}: reading manifest {reference}: "
                                f"{_describe(e)}") from e
        if len(body) > mf.MAX_MANIFEST:
            raise UnsupportedImage(f"{self.ref}: manifest larger than {mf.MAX_MANIFEST} bytes")
        return body, resp.headers.get("Content-Type", "")

    def fetch_blob(self, digest: str, size: int, out: BinaryIO,
                   on_bytes: Callable[[int], None] = lambda done: None) -> None:
        """Stream a blob into `out` (empty, seekable), verifying size and digest on the way.
        An interrupted transfer resumes with a Range request (or restarts if the server will
        not, or answers it badly); the digest is checked over every byte written. Every
        failure counts: after `attempts` the blob fails, whatever the server keeps answering."""
        algorithm, _, expected = digest.partition(":")
        url = f"{self.base}/blobs/{digest}"
        hasher = hashlib.new(algorithm)
        done = 0
        failures = 0
        while True:
            resp = self.request("GET", url, {"Range": f"bytes={done}-"} if done else {})
            if resp.status == 404:
                raise NotInRegistry(f"{self.ref.name}: blob {digest} not found in "
                                    f"{self.ref.registry} ({_error_text(resp)})")
            if resp.status not in (200, 206):
                raise RegistryError(f"{self.ref.registry}: blob {digest}: {_error_text(resp)}")
            content_range = resp.headers.get("Content-Range", "")
            start = 0 if resp.status == 200 else _range_start(content_range)
            restart = start != done
            if start is not None and start != done:
                # The server ignored our Range (200) or answered another one: start over.
                out.seek(0)
                out.truncate()
                hasher = hashlib.new(algorithm)
                done = 0
                restart = start != 0
            if restart:
                resp.close()
                why = f"unusable Content-Range {content_range!r} in a 206 answer"
            else:
                error: BaseException | None = None
                try:
                    for chunk in self._chunks(resp):
                        if done + len(chunk) > size:
                            resp.close()
                            raise DigestMismatch(f"blob {digest}: registry sent more than the "
                                                 f"{size} bytes its descriptor says")
                        out.write(chunk)
                        hasher.update(chunk)
                        done += len(chunk)
                        on_bytes(done)
                except (OSError, http.client.HTTPException) as e:
                    error = e
                if done == size:
                    break
                why = _describe(error) if error else "connection closed early"
            # Resume where we are (or, after a bad range answer, from the start, asking for no
            # range at all) on fresh connections: after a redirect the broken one may be another
            # host's.
            self.close()
            self._cancel.check()
            failures += 1
            if failures >= self._attempts:
                raise RegistryError(f"{self.ref.registry}: download of blob {digest} failed at "
                                    f"{done} of {size} bytes ({why}) after {failures} attempts")
            LOG.warning("registry %s: blob %s interrupted at %d/%d bytes (%s); %s",
                        self.ref.registry, digest[:19], done, size, why,
                        "starting over" if restart else "resuming")
            if restart:
                out.seek(0)
                out.truncate()
                hasher = hashlib.new(algorithm)
                done = 0
            self._wait(failures)
        if hasher.hexdigest() != expected:
            raise DigestMismatch(f"blob {digest}: content does not match its digest (got "
                                 f"{algorithm}:{hasher.hexdigest()})")
