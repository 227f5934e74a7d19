"""The build cache: keys, entries built once under a lock, and nothing half-written left behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from onebuild import cache
from onebuild.tools import BuildError


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MVIRT_ONE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_key_is_canonical_and_covers_every_value() -> None:
    assert cache.key({"a": 1, "b": [2, 3]}) == cache.key({"b": [2, 3], "a": 1})
    assert cache.key({"a": 1}) != cache.key({"a": 2})
    assert len(cache.key({})) == 64


def test_toolchain_names_the_compiler_and_the_linker() -> None:
    gcc, ld = cache.toolchain()
    assert gcc.startswith("gcc") and "ld" in ld


def test_obtain_builds_once_then_hits(private_cache: Path) -> None:
    entry = cache.Entry("thing", {"v": 1}, ("out",))
    calls: list[Path] = []

    def build(dest: Path) -> None:
        calls.append(dest)
        (dest / "out").write_text("made")

    assert entry.obtain(build) is False
    assert entry.obtain(build) is True
    assert len(calls) == 1 and not calls[0].exists()  # built in a temporary directory
    assert entry.path == private_cache / "thing" / entry.key
    assert (entry.path / "out").read_text() == "made"
    assert (entry.path / cache.INPUTS_NAME).read_text().strip().startswith("{")
    target = private_cache.parent / "target"
    entry.install(target)
    assert (target / "out").read_text() == "made"


def test_a_failed_build_leaves_no_entry_and_no_temporary_files(private_cache: Path) -> None:
    entry = cache.Entry("thing", {"v": 2}, ("out", "other"))

    def half(dest: Path) -> None:
        (dest / "out").write_text("only one of two")

    with pytest.raises(BuildError, match="left no other"):
        entry.obtain(half)
    assert not entry.path.exists()
    assert list(entry.path.parent.iterdir()) == []

    def broken(dest: Path) -> None:
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        entry.obtain(broken)
    assert list(entry.path.parent.iterdir()) == []


def test_a_second_builder_waits_for_the_first_and_hits() -> None:
    entry = cache.Entry("thing", {"v": 3}, ("out",))
    building = threading.Event()
    release = threading.Event()
    calls = []

    def slow(dest: Path) -> None:
        calls.append(dest)
        building.set()
        assert release.wait(timeout=30)
        (dest / "out").write_text("once")

    results: dict[str, bool] = {}
    first = threading.Thread(target=lambda: results.update(first=entry.obtain(slow)))
    first.start()
    assert building.wait(timeout=30)
    second = threading.Thread(target=lambda: results.update(second=entry.obtain(slow)))
    second.start()
    second.join(timeout=1)
    assert second.is_alive(), "the second builder must wait on the entry's lock"
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert results == {"first": False, "second": True}
    assert len(calls) == 1


def test_atomic_write_replaces_whole_files_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f"
    cache.atomic_write(target, b"one", mode=0o600)
    cache.atomic_write(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o644

    with pytest.raises(TypeError):
        cache.atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
