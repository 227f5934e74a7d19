"""Errors of the pod service, each naming the gRPC status the API answers with."""

from __future__ import annotations

from init.services.errors import ServiceError


class PodError(ServiceError, status="INTERNAL"): ...


class InvalidPod(PodError, ValueError, status="INVALID_ARGUMENT"): ...


class PodNotFound(PodError, LookupError, status="NOT_FOUND"): ...


class PodExists(PodError, status="ALREADY_EXISTS"): ...


class WrongState(PodError, status="FAILED_PRECONDITION"): ...
