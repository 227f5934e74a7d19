"""Exit codes scripts can rely on, and the one error type every command raises.

  0    success
  1    the server answered with a gRPC error (NOT_FOUND, FAILED_PRECONDITION, an UNAVAILABLE of
       its own such as a registry it cannot reach, ...), a call timed out, or `health` reported
       healthy=false
  2    usage error (bad arguments or address), as argparse does it
  3    cannot reach the server: connect failed, hybrid-vsock handshake refused or garbled,
       connection lost (gRPC UNAVAILABLE, and Health unanswered after it)
  4    local failure: a missing host tool, a VM that did not boot or did not signal READY
  130  interrupted (Ctrl-C) before the command finished
"""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0
    SERVER_ERROR = 1
    USAGE = 2
    UNAVAILABLE = 3
    LOCAL = 4
    INTERRUPTED = 130


class OnectlError(Exception):
    """An error shown to the user as one line (`onectl: <message>`) and mapped to an exit code."""

    def __init__(self, message: str, code: Exit = Exit.LOCAL) -> None:
        super().__init__(message)
        self.code = code


class UsageError(OnectlError):
    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.USAGE)


class ConnectError(OnectlError):
    """The server could not be reached (exit code 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.UNAVAILABLE)
