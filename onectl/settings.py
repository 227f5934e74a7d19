"""How to reach the server; kept apart from client.py so the parser and `onectl run` need not
import grpcio (~0.13 s) until a command really calls the API."""

from __future__ import annotations

from dataclasses import dataclass

from onectl.address import Address

DEFAULT_TIMEOUT = 30.0  # seconds for one call
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to wait for a booting guest to listen (hybrid vsock)


@dataclass(frozen=True)
class Settings:
    address: Address
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
