"""Entry point: `python -m init`, the `mvirt-one-init` script, and the frozen /init."""

from __future__ import annotations

import sys

from init import openssl

# OpenSSL loads with the first pull, not with asyncio (init/openssl.py).
with openssl.hidden():
    from init.app import main

if __name__ == "__main__":
    sys.exit(main())
