"""The build cache outside the clone: entries named by a hash of everything that shaped them.

CI starts from a fresh clone and a kernel takes minutes on two cores, so expensive outputs (the
kernel, the static crun) live in `cache_dir()/<kind>/<key>/`, where the key is the sha256 of the
entry's inputs (sources, configuration, recipe and the toolchain). A hit is exactly what a rebuild
would produce. An entry is built under a lock (doit and pytest may build the same one at once) in a
temporary directory renamed into place, so readers and a build killed halfway never see half an
entry; `inputs.json` in the entry says what went into it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onebuild import paths
from onebuild.tools import BuildError, output

INPUTS_NAME = "inputs.json"
LOCKS = ".locks"  # beside the kinds, so an entry's directory holds only entries


def toolchain() -> list[str]:
    """The compiler and linker as they identify themselves: both shape the bytes of a build."""
    return [
        output(["gcc", "--version"]).splitlines()[0],
        output(["ld", "--version"]).splitlines()[0],
    ]


def key(inputs: Mapping[str, Any]) -> str:
    """sha256 of the inputs in a canonical JSON form (sorted keys)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` so readers see the old or the new content, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_file(source: Path, dest: Path) -> None:
    """Copy `source` to `dest` atomically, keeping its permission bits."""
    atomic_write(dest, source.read_bytes(), mode=source.stat().st_mode & 0o7777)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Entry:
    """One cache entry: `outputs` (file names) built from `inputs`, under `kind`/`key`."""

    kind: str
    inputs: Mapping[str, Any]
    outputs: Sequence[str]

    @property
    def key(self) -> str:
        return key(self.inputs)

    @property
    def path(self) -> Path:
        return paths.cache_dir() / self.kind / self.key

    def complete(self) -> bool:
        return all((self.path / name).is_file() for name in self.outputs)

    @contextmanager
    def lock(self) -> Iterator[None]:
        with file_lock(paths.cache_dir() / LOCKS / f"{self.kind}-{self.key}"):
            yield

    def store(self, fill: Callable[[Path], None]) -> None:
        """Let `fill` write the outputs into a temporary directory, then rename it into place.

        If the entry already exists (another build stored the same key first), it is kept: the
        same inputs give the same bytes.
        """
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.key}."))
        try:
            fill(tmp)
            missing = [name for name in self.outputs if not (tmp / name).is_file()]
            if missing:
                raise BuildError(f"{self.kind} build left no {', '.join(missing)}")
            (tmp / INPUTS_NAME).write_text(json.dumps(self.inputs, indent=2, sort_keys=True) + "\n")
            tmp.chmod(0o755)
            try:
                tmp.rename(self.path)
            except OSError:
                if not self.complete():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def obtain(self, build: Callable[[Path], None]) -> bool:
        """Make the entry exist: True on a hit, else `build(tmp)` fills it (under the lock)."""
        with self.lock():
            if self.complete():
                return True
            self.store(build)
            return False

    def install(self, dest_dir: Path) -> None:
        """Copy the entry's outputs into `dest_dir`, each replaced atomically."""
        for name in self.outputs:
            install_file(self.path / name, dest_dir / name)
