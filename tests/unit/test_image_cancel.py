"""Cancel.apart (init/services/image/connections.py): a blocking call in a thread of its own,
given up on when the pulls are cancelled."""

from __future__ import annotations

import threading
import time

import pytest

from init.services.image.connections import Cancel
from init.services.image.errors import PullCancelled


def test_the_calls_value_and_error_reach_the_caller() -> None:
    def fails() -> None:
        raise OSError("no such name")

    cancel = Cancel()
    assert cancel.apart(lambda: 42) == 42
    with pytest.raises(OSError, match="no such name"):
        cancel.apart(fails)


def test_cancelled_while_the_call_blocks_the_caller_goes_at_once() -> None:
    cancel = Cancel()
    started = threading.Event()
    release = threading.Event()

    def blocks() -> int:
        started.set()
        release.wait(60)
        return 1

    def cancel_once_started() -> None:
        assert started.wait(30)
        cancel.cancel()

    threading.Thread(target=cancel_once_started).start()
    began = time.monotonic()
    with pytest.raises(PullCancelled):
        cancel.apart(blocks)
    assert time.monotonic() - began < 10
    assert not release.is_set()  # the call is still blocked; nobody waited for it
    release.set()


def test_after_a_cancel_no_call_starts() -> None:
    cancel = Cancel()
    cancel.cancel()
    calls: list[int] = []
    with pytest.raises(PullCancelled):
        cancel.apart(lambda: calls.append(1))
    assert calls == []
