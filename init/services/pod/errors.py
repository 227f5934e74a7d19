"""Errors of the pod service, each naming the gRPC status the API answers with."""

from __future__ import annotations


class PodError(Exception):
    grpc_status = "INTERNAL"


class InvalidPod(PodError, ValueError):
    grpc_status = "INVALID_ARGUMENT"


class PodNotFound(PodError, LookupError):
    grpc_status = "NOT_FOUND"


class PodExists(PodError):
    grpc_status = "ALREADY_EXISTS"


class WrongState(PodError):
    grpc_status = "FAILED_PRECONDITION"
