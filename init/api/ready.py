"""READY: tell the host the API serves, by writing `READY\\n` to vsock CID 2 (the host).

The host listens before it starts the VM (hybrid vsock: on `<uds>_PORT`). A host that does not
listen, or a VM without a vsock device, must not hold the boot up: the signal runs as a background
task, retries briefly while the host side resets the connection, and a failure is one log line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time

LOG = logging.getLogger("mvirt-one")

HOST_CID = socket.VMADDR_CID_HOST  # 2
MESSAGE = b"READY\n"
# Errors worth another try: the host's listener may appear a moment late, and hybrid vsock
# reports a missing listener as a reset. Anything else (no vsock device: ENODEV) is final.
_RETRYABLE = {errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE, errno.ETIMEDOUT}


async def signal_ready(port: int, *, timeout: float = 5.0, retry_every: float = 0.2) -> bool:
    """Write READY to the host; True if it was delivered. Never raises (but is cancellable)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            await asyncio.wait_for(_send_once(port), max(remaining, 0.01))
        except TimeoutError:
            LOG.warning("READY not delivered to the host (vsock %d:%d): no answer in %.0f s",
                        HOST_CID, port, timeout)
            return False
        except OSError as e:
            if e.errno in _RETRYABLE and time.monotonic() + retry_every < deadline:
                await asyncio.sleep(retry_every)
                continue
            LOG.warning("READY not delivered to the host (vsock %d:%d): %s (attempt %d)",
                        HOST_CID, port, e.strerror or e, attempt)
            return False
        LOG.info("READY sent to the host (vsock %d:%d)", HOST_CID, port)
        return True


async def _send_once(port: int) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST_CID, port))
        await loop.sock_sendall(sock, MESSAGE)
    finally:
        sock.close()
