"""Errors of the image service, each naming its gRPC status (see init/services/errors.py)."""

from __future__ import annotations

from init.services.errors import ServiceError


# Base of every error the image service raises on purpose.
class ImageError(ServiceError, status="INTERNAL"): ...


# The image reference cannot be parsed (bad syntax, upper case, bad digest...).
class InvalidReference(ImageError, ValueError, status="INVALID_ARGUMENT"): ...


# The registry could not be reached or answered with an error after the retries.
class RegistryError(ImageError, status="UNAVAILABLE"): ...


# The registry wants credentials we do not have, or refused the ones we sent.
class AuthenticationError(RegistryError, status="UNAUTHENTICATED"): ...


# The registry does not know the repository, tag or digest.
class NotInRegistry(RegistryError, status="NOT_FOUND"): ...


# Content did not match its digest (or size); it was discarded, nothing was stored.
class DigestMismatch(ImageError, status="DATA_LOSS"): ...


# A layer's compressed stream is corrupt, truncated or followed by other bytes: its digest matched,
# so the registry holds it so, and pulling again cannot help.
class CorruptLayer(ImageError, status="DATA_LOSS"): ...


# A layer tried to write outside its rootfs (absolute path, `..`, escaping link).
class UnsafeLayer(ImageError, status="FAILED_PRECONDITION"): ...


# A manifest or layer we cannot use: schema 1, unknown media type, no matching platform.
class UnsupportedImage(ImageError, status="FAILED_PRECONDITION"): ...


# No image with that reference or digest in the local store.
class ImageNotFound(ImageError, LookupError, status="NOT_FOUND"): ...


# The image cannot be removed while a container uses it.
class ImageInUse(ImageError, status="FAILED_PRECONDITION"): ...


# The data directory has not the room an image needs (checked before, or ran out midway).
class NoSpace(ImageError, status="RESOURCE_EXHAUSTED"): ...


# The registry's TLS certificate did not verify (untrusted issuer, wrong name, expired):
# retrying cannot help until the certificate or the trusted CAs change.
class UntrustedRegistry(RegistryError, status="FAILED_PRECONDITION"): ...


# A CA file given to trust (one.ca_file, --ca-file) cannot be read or holds no certificate.
class BadCaFile(ImageError, status="FAILED_PRECONDITION"): ...


# The pull was stopped because the init is shutting down.
class PullCancelled(ImageError, status="UNAVAILABLE"): ...
