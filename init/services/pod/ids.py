"""Ids of pods and containers: they become file names and runtime ids, so they are checked first."""

from __future__ import annotations

import re

from init.services.pod.errors import InvalidPod

ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")


def check(kind: str, value: str) -> str:
    if not ID.fullmatch(value):
        raise InvalidPod(f"invalid {kind} id {value!r}: 1-64 characters of letters, digits, "
                         "'_', '.', '-', starting with a letter or digit")
    return value
