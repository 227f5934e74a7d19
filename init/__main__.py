"""Entry point: `python -m init`, the `mvirt-one-init` script, and the frozen /init."""

from __future__ import annotations

import sys

from init import openssl
from init.system import idna

# Before anything resolves a host name: the frozen init has no unicodedata (init/system/idna.py).
idna.register()

# OpenSSL loads with the first pull, not with asyncio (init/openssl.py).
with openssl.hidden():
    from init.app import main

if __name__ == "__main__":
    sys.exit(main())
