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


# A pod's name is its containers' hostname and a line of their /etc/hosts: a label as a hostname
# allows (the kernel takes 64 bytes), nothing that could break a line or a word.
NAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?")


def check_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise InvalidPod(f"invalid pod name {value[:80]!r}: 1-63 letters, digits, '-' or '.', "
                         "starting and ending with a letter or digit")
    return value


def check_texts(what: str, texts: list[str]) -> None:
    """Commands, arguments, environment and paths become C strings: no NUL byte in them."""
    for text in texts:
        if "\0" in text:
            raise InvalidPod(f"{what}: {text[:64]!r} holds a NUL byte")
