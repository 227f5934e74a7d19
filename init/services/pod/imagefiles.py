"""Reading a file of an image's rootfs as the container would see it, never as the host does.

The path is resolved inside the rootfs (openat2 RESOLVE_IN_ROOT: an absolute symlink starts again
at the rootfs, `..` stops at it), so an image cannot make the init read a host file through a
symlink. Only a regular file of bounded size is read: a FIFO or a device would block or never
end. Called from a worker thread: the file is on disk and the event loop must not wait for it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from init.services.pod.errors import InvalidPod
from init.system import libc

MAX_SIZE = 4 << 20  # bytes: far beyond any real passwd or group file


def read_text(rootfs: Path, path: str, limit: int = MAX_SIZE) -> str | None:
    """The text of `path` (absolute, in the container's view) in `rootfs`; None if it does not
    exist there. InvalidPod if it is not a regular file or is larger than `limit`."""
    root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = libc.open_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY |
                               os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise InvalidPod(f"the image's {path} cannot be read: {e.strerror}") from e
    finally:
        os.close(root)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidPod(f"the image's {path} is not a regular file")
        if st.st_size > limit:
            raise InvalidPod(f"the image's {path} is larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while read
        raise InvalidPod(f"the image's {path} is larger than {limit} bytes")
    return data.decode(errors="replace")
