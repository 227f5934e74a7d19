"""The base of every error a service raises on purpose.

Each class names the gRPC status the API answers it with (`status=`, a name of grpclib.Status,
inherited unless given), so the API maps them all in one place without knowing every class;
messages are written for the person who made the call.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    grpc_status = "INTERNAL"

    def __init_subclass__(cls, status: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.grpc_status = status


class ShuttingDown(ServiceError):
    """New work (a pod, a start, an exec, a pull) after the way down began."""

    grpc_status = "UNAVAILABLE"
