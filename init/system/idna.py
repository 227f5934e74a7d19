"""An ASCII-only "idna" codec, for an interpreter without unicodedata.

The socket module encodes every str host name with the "idna" codec before it resolves it, and
ssl does the same for the name it checks a certificate against. The stdlib's codec imports
stringprep, which needs unicodedata: the frozen init's libpython leaves that module out
(onebuild/libpython.py), so the stdlib codec cannot load there and Python asks the next search
function, this one. Registry host names are ASCII by the distribution spec's reference grammar,
and an internationalised name can be given in its ASCII (punycode, "xn--") form.

Where the stdlib codec loads (any normal Python), it is found first and this one is never used.
"""

from __future__ import annotations

import codecs

NAME = "idna"
_MAX_LABEL = 63


class NotAsciiHostError(UnicodeError):
    """A host name with non-ASCII characters: this interpreter cannot IDNA-encode it."""


def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    """The stdlib codec's ASCII path: the name as is, each label 1-63 characters."""
    if errors != "strict":
        raise UnicodeError(f"unsupported error handling {errors!r}")
    if not text:
        return b"", 0
    try:
        result = text.encode("ascii")
    except UnicodeEncodeError:
        raise NotAsciiHostError(f"host name {text!r} is not ASCII: give its punycode (xn--) "
                                "form") from None
    labels = result.split(b".")
    if labels[-1] == b"":  # a trailing dot, as in a fully qualified name
        labels.pop()
    for label in labels:
        if not 0 < len(label) <= _MAX_LABEL:
            raise UnicodeError(f"host name {text!r}: label empty or longer than {_MAX_LABEL}")
    return result, len(text)


def decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    """ASCII as is: punycode labels stay in their "xn--" form."""
    if errors != "strict":
        raise UnicodeError(f"unsupported error handling {errors!r}")
    return bytes(data).decode("ascii"), len(data)


def _search(name: str) -> codecs.CodecInfo | None:
    if name != NAME:
        return None
    return codecs.CodecInfo(encode, decode, name=NAME)  # type: ignore[arg-type]


def register() -> None:
    """Make "idna" available to socket and ssl; a no-op where the stdlib codec works."""
    codecs.register(_search)
