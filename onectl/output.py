"""Printing results: `-o json` for scripts (one JSON document, proto field names, every field
present), `-o text` (the default) for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

FORMATS = ("text", "json")


def message_dict(message: Message) -> dict[str, Any]:
    """A message as a dict with proto field names, enums by name and defaults included, so a
    script can rely on every key being there (proto3 would otherwise drop zeros and empties)."""
    data: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return data


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def print_fields(rows: Sequence[tuple[str, object]]) -> None:
    """`key: value` lines, keys aligned."""
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; empty cells shown as '-'."""
    cells = [list(header)] + [[cell or "-" for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
