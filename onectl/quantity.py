"""Kubernetes resource quantities as pod files and flags write them: memory `64Mi`, `1G`,
`512000000`; CPU `250m`, `0.5`, `2`."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class QuantityError(ValueError):
    pass


def memory_bytes(text: object) -> int:
    value = str(text).strip()
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", value)
    if m is None:
        raise QuantityError(f"{value!r} is not a memory quantity (e.g. 64Mi, 1Gi, 500M)")
    scale = _BINARY.get(m[2] or "") or _DECIMAL.get(m[2] or "") or 1
    return int(Decimal(m[1]) * scale)


def cpu_millis(text: object) -> int:
    value = str(text).strip()
    try:
        millis = Decimal(value[:-1]) if value.endswith("m") else Decimal(value) * 1000
    except InvalidOperation:
        raise QuantityError(f"{value!r} is not a CPU quantity (e.g. 250m, 0.5, 2)") from None
    if millis != millis.to_integral_value() or millis < 0:
        raise QuantityError(f"{value!r}: CPU comes in whole millicores (at least 1m)")
    return int(millis)
