"""Errors of the image service.

Each class names the gRPC status the API answers it with (`grpc_status`), so the API maps them
without knowing every class; messages are written for the person who typed the reference.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base of every error the image service raises on purpose."""

    grpc_status = "INTERNAL"


class InvalidReference(ImageError, ValueError):
    """The image reference cannot be parsed (bad syntax, upper case, bad digest...)."""

    grpc_status = "INVALID_ARGUMENT"


class RegistryError(ImageError):
    """The registry could not be reached or answered with an error after the retries."""

    grpc_status = "UNAVAILABLE"


class AuthenticationError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""

    grpc_status = "UNAUTHENTICATED"


class NotInRegistry(RegistryError):
    """The registry does not know the repository, tag or digest."""

    grpc_status = "NOT_FOUND"


class DigestMismatch(ImageError):
    """Content did not match its digest (or size); it was discarded, nothing was stored."""

    grpc_status = "DATA_LOSS"


class UnsafeLayer(ImageError):
    """A layer tried to write outside its rootfs (absolute path, `..`, escaping link)."""

    grpc_status = "FAILED_PRECONDITION"


class UnsupportedImage(ImageError):
    """A manifest or layer we cannot use: schema 1, unknown media type, no matching platform."""

    grpc_status = "FAILED_PRECONDITION"


class ImageNotFound(ImageError, LookupError):
    """No image with that reference or digest in the local store."""

    grpc_status = "NOT_FOUND"


class ImageInUse(ImageError):
    """The image cannot be removed while a container uses it."""

    grpc_status = "FAILED_PRECONDITION"
