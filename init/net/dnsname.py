"""DNS names in wire format (RFC 1035 3.1), as DHCP and router advertisements carry them.

DHCPv4's domain search option (119, RFC 3397) may use RFC 1035 compression pointers; DHCPv6's
domain list (24) and the RA's DNSSL (RFC 8106) must not, but a peer may send them anyway, so one
decoder serves all three. Only `DnsNameError` escapes it.
"""

from __future__ import annotations

MAX_NAME = 255  # RFC 1035 2.3.4: a name is at most 255 octets on the wire
MAX_LABEL = 63


class DnsNameError(ValueError):
    """The bytes are not a well-formed list of DNS names."""


def decode_names(data: bytes, *, compression: bool) -> list[str]:
    """Every name in `data`, in order. Zero padding after the last name is allowed (DNSSL)."""
    names: list[str] = []
    offset = 0
    while offset < len(data):
        if data[offset:].strip(b"\0") == b"":
            break  # trailing padding up to the option's 8-octet boundary
        name, offset = _decode_one(data, offset, compression)
        names.append(name)
    return names


def _decode_one(data: bytes, offset: int, compression: bool) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None  # where the caller resumes: just after the first pointer, if any
    seen: set[int] = set()  # pointer targets, to refuse loops
    size = 0
    while True:
        if offset >= len(data):
            raise DnsNameError("name runs past the end of the option")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if not compression:
                raise DnsNameError("compression pointer where none is allowed")
            if offset + 1 >= len(data):
                raise DnsNameError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if end is None:
                end = offset + 2
            # RFC 1035 pointers go backwards; a forward or repeated one is a loop or garbage.
            if target >= offset or target in seen:
                raise DnsNameError("compression pointer loop")
            seen.add(target)
            offset = target
            continue
        if length & 0xC0:
            raise DnsNameError(f"unknown label type {length >> 6}")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise DnsNameError("label runs past the end of the option")
        raw = data[offset:offset + length]
        size += length + 1
        if size > MAX_NAME:
            raise DnsNameError("name longer than 255 octets")
        try:
            label = raw.decode("ascii")
        except UnicodeDecodeError:
            raise DnsNameError("label is not ASCII") from None
        if not label.isprintable() or "." in label or " " in label:
            raise DnsNameError(f"label {label!r} cannot go into resolv.conf")
        labels.append(label)
        offset += length
    if not labels:
        raise DnsNameError("empty name")
    return ".".join(labels), end if end is not None else offset


def encode_names(names: list[str]) -> bytes:
    """Uncompressed wire format (what tests and the DHCPv6 encoder need)."""
    out = bytearray()
    for name in names:
        for label in name.rstrip(".").split("."):
            raw = label.encode("ascii")
            if not 0 < len(raw) <= MAX_LABEL:
                raise DnsNameError(f"bad label in {name!r}")
            out.append(len(raw))
            out += raw
        out.append(0)
    return bytes(out)
