"""Entry point: `python -m init`, the `mvirt-one-init` script, and the frozen /init."""

from __future__ import annotations

import gc
import sys

# No cyclic collection while the boot imports: its passes over a heap that only grows are work
# for nothing; the init turns it back on once it serves (app.py).
gc.disable()

from init import precompiled  # noqa: E402

precompiled.install_bundled()

from init import openssl  # noqa: E402

# OpenSSL loads with the first pull, not with asyncio (init/openssl.py).
with openssl.hidden():
    from init.app import main

if __name__ == "__main__":
    sys.exit(main())
