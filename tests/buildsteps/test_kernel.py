"""onebuild.kernel: config parsing, the dropped-option check, menuconfig fold-back, source
resolution and the cache. The fast tests need no kernel source; the `host` ones run the real
kconfig (tinyconfig + kernel.config + olddefconfig) in a scratch O= directory, never a full build.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from onebuild import cache, paths, tools
from onebuild.kernel import bzimage, kconfig, menuconfig, patches, source
from onebuild.tools import BuildError

FRAGMENT = """\
# why: the guest needs these
CONFIG_SMP=y
CONFIG_VETH=y
# CONFIG_SLOB is not set
CONFIG_CMDLINE="console=ttyS0 quiet"

# more
CONFIG_INPUT=y
CONFIG_ACPI_BUTTON=y
"""


# --- parse / format / check -----------------------------------------------------------------


def test_parse_config_reads_set_unset_and_strings() -> None:
    text = (
        "#\n# Automatically generated file\n#\nCONFIG_A=y\n# CONFIG_B is not set\n"
        'CONFIG_C="two words"\nCONFIG_D=0x10\n  CONFIG_E=m  \n# a comment, CONFIG_F=y\n'
    )
    assert kconfig.parse_config(text) == {
        "CONFIG_A": "y",
        "CONFIG_B": "n",
        "CONFIG_C": '"two words"',
        "CONFIG_D": "0x10",
        "CONFIG_E": "m",
    }


def test_parse_config_last_value_wins_like_kconfig() -> None:
    assert kconfig.parse_config("CONFIG_A=y\n# CONFIG_A is not set\n") == {"CONFIG_A": "n"}


def test_format_option_round_trips() -> None:
    for symbol, value in [("CONFIG_A", "y"), ("CONFIG_B", "n"), ("CONFIG_C", '"x y"')]:
        line = kconfig.format_option(symbol, value)
        assert kconfig.parse_config(line) == {symbol: value}
    assert kconfig.format_option("CONFIG_B", "n") == "# CONFIG_B is not set"


def test_dropped_options_treats_missing_as_n() -> None:
    wanted = {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"x"', "CONFIG_D": "n", "CONFIG_E": "y"}
    got = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_E": "m"}
    assert kconfig.dropped_options(wanted, got) == {
        "CONFIG_B": ("n", "y"),
        "CONFIG_C": ('"x"', "n"),
        "CONFIG_E": ("y", "m"),
    }


def test_check_config_names_each_dropped_option_with_wanted_and_got() -> None:
    with pytest.raises(BuildError) as err:
        kconfig.check_config(
            {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_OK": "y"},
            {
                "CONFIG_B": "y",
                "CONFIG_OK": "y",
            },
        )
    message = str(err.value)
    assert "CONFIG_A: wanted y, got n" in message
    assert "CONFIG_B: wanted n, got y" in message
    assert "CONFIG_OK" not in message
    kconfig.check_config({"CONFIG_A": "y"}, {"CONFIG_A": "y"})  # nothing dropped: no error


# --- fold-back ------------------------------------------------------------------------------


def test_changed_options_absent_equals_n() -> None:
    old = {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "y"}
    new = {"CONFIG_A": "n", "CONFIG_C": "y", "CONFIG_D": "y", "CONFIG_E": "n"}
    assert menuconfig.changed_options(old, new) == {"CONFIG_A": "n", "CONFIG_D": "y"}


def test_fold_back_updates_lines_in_place_and_appends_new_ones() -> None:
    old = kconfig.parse_config(FRAGMENT) | {"CONFIG_OTHER": "y", "CONFIG_VIRTIO_BALLOON": "n"}
    new = dict(old, CONFIG_VETH="n", CONFIG_SLOB="y", CONFIG_VIRTIO_BALLOON="y")
    new["CONFIG_CMDLINE"] = '"console=hvc0"'
    out = menuconfig.fold_back(FRAGMENT, old, new)
    lines = out.splitlines()
    # changed symbols keep their place (and the comments around them)
    assert lines[:5] == [
        "# why: the guest needs these",
        "CONFIG_SMP=y",
        "# CONFIG_VETH is not set",
        "CONFIG_SLOB=y",
        'CONFIG_CMDLINE="console=hvc0"',
    ]
    # a symbol the fragment did not have goes under the menuconfig header, at the end
    assert lines[-2:] == [menuconfig.MENUCONFIG_HEADER, "CONFIG_VIRTIO_BALLOON=y"]
    assert kconfig.parse_config(out) == kconfig.parse_config(FRAGMENT) | {
        "CONFIG_VETH": "n",
        "CONFIG_SLOB": "y",
        "CONFIG_CMDLINE": '"console=hvc0"',
        "CONFIG_VIRTIO_BALLOON": "y",
    }


def test_fold_back_leaves_newly_visible_symbols_to_kconfig() -> None:
    # Enabling BRIDGE makes BRIDGE_IGMP_SNOOPING visible (default y) and selects STP: both follow
    # from BRIDGE=y, so only BRIDGE is written (apply_config_edit pins any that do not follow).
    old = kconfig.parse_config(FRAGMENT) | {"CONFIG_BRIDGE": "n"}
    new = dict(old, CONFIG_BRIDGE="y", CONFIG_BRIDGE_IGMP_SNOOPING="y", CONFIG_STP="y")
    out = kconfig.parse_config(menuconfig.fold_back(FRAGMENT, old, new))
    assert out == kconfig.parse_config(FRAGMENT) | {"CONFIG_BRIDGE": "y"}


def test_fold_back_twice_reuses_the_header() -> None:
    base = kconfig.parse_config(FRAGMENT) | {"CONFIG_X": "n", "CONFIG_Y": "n"}
    once = menuconfig.fold_back(FRAGMENT, base, dict(base, CONFIG_X="y"))
    twice = menuconfig.fold_back(
        once, dict(base, CONFIG_X="y"), dict(base, CONFIG_X="y", CONFIG_Y="y")
    )
    assert twice.count(menuconfig.MENUCONFIG_HEADER) == 1
    assert twice.endswith(f"{menuconfig.MENUCONFIG_HEADER}\nCONFIG_X=y\nCONFIG_Y=y\n")


def test_fold_back_without_changes_keeps_the_text() -> None:
    base = kconfig.parse_config(FRAGMENT)
    assert menuconfig.fold_back(FRAGMENT, base, dict(base)) == FRAGMENT


def test_fold_back_vanished_symbols_only_when_the_fragment_names_them() -> None:
    # Disabling INPUT hides ACPI_BUTTON (named in the fragment: must become "not set", or the
    # build would report it dropped) and INPUT_EVDEV (not named: nothing to write).
    old = kconfig.parse_config(FRAGMENT) | {"CONFIG_INPUT_EVDEV": "y"}
    new = {k: v for k, v in old.items() if k not in ("CONFIG_ACPI_BUTTON", "CONFIG_INPUT_EVDEV")}
    new["CONFIG_INPUT"] = "n"
    out = kconfig.parse_config(menuconfig.fold_back(FRAGMENT, old, new))
    assert out["CONFIG_INPUT"] == "n"
    assert out["CONFIG_ACPI_BUTTON"] == "n"
    assert "CONFIG_INPUT_EVDEV" not in out


def test_fold_back_rewrites_every_line_of_a_repeated_symbol() -> None:
    text = "CONFIG_A=y\nCONFIG_B=y\nCONFIG_A=y\n"
    out = menuconfig.fold_back(text, {"CONFIG_A": "y"}, {"CONFIG_A": "n"})
    assert out == "# CONFIG_A is not set\nCONFIG_B=y\n# CONFIG_A is not set\n"


# --- versions and sources -------------------------------------------------------------------


MAKEFILE = (
    "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = {sub}\nEXTRAVERSION ={extra}\nNAME = x\n"
)


def test_makefile_version() -> None:
    assert source.makefile_version(MAKEFILE.format(sub=192, extra="")) == "6.1.192"
    assert source.makefile_version(MAKEFILE.format(sub=0, extra="")) == "6.1"
    assert source.makefile_version(MAKEFILE.format(sub=0, extra=" -rc3")) == "6.1-rc3"
    with pytest.raises(BuildError):
        source.makefile_version("all:\n\ttrue\n")


def make_tarball(path: Path, version_parts: tuple[int, int, int], top: str = "linux-x") -> Path:
    """A tiny source tarball: a top directory with a Makefile and one more file."""
    major, minor, sub = version_parts
    makefile = MAKEFILE.replace("VERSION = 6", f"VERSION = {major}")
    makefile = makefile.replace("PATCHLEVEL = 1", f"PATCHLEVEL = {minor}").format(sub=sub, extra="")
    with tarfile.open(path, "w:xz") as archive:
        for name, data in [("README", b"hello\n"), ("Makefile", makefile.encode())]:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_tarball_version_reads_the_top_makefile(tmp_path: Path) -> None:
    assert source.tarball_version(make_tarball(tmp_path / "a.tar.xz", (6, 1, 192))) == "6.1.192"
    not_kernel = tmp_path / "b.tar.xz"
    with tarfile.open(not_kernel, "w:xz"):
        pass
    with pytest.raises(BuildError, match="not a kernel source"):
        source.tarball_version(not_kernel)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """kernel.version 6.1.192, target/, kernel/, Debian's /usr/src and the cache under tmp_path."""
    version_file = tmp_path / "kernel.version"
    version_file.write_text("6.1.192\n")
    monkeypatch.setattr(source, "VERSION_FILE", version_file)
    monkeypatch.setattr(paths, "TARGET", tmp_path / "target")
    monkeypatch.setattr(paths, "KERNEL_TREE", tmp_path / "kernel")
    monkeypatch.setattr(source, "DEBIAN_SRC", tmp_path / "usr-src")
    monkeypatch.setattr(patches, "PATCH_DIR", tmp_path / "kernel.patches")
    monkeypatch.setenv("MVIRT_ONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KERNEL_TARBALL", raising=False)
    (tmp_path / "usr-src").mkdir()
    return tmp_path


def no_download(version: str) -> Path:
    raise BuildError("network disabled in tests")


def test_kernel_version_rejects_junk(sandbox: Path) -> None:
    assert source.kernel_version() == "6.1.192"
    (sandbox / "kernel.version").write_text("latest\n")
    with pytest.raises(BuildError, match="not a kernel version"):
        source.kernel_version()


def test_find_source_order(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "download", no_download)
    debian = make_tarball(sandbox / "usr-src" / "linux-source-6.1.tar.xz", (6, 1, 192))
    assert source.find_source().tarball == debian
    (sandbox / "target").mkdir()
    in_target = make_tarball(sandbox / "target" / "linux-6.1.192.tar.xz", (6, 1, 192))
    (sandbox / "target" / "linux-6.1.192.tar.xz.part").write_text("half a download")
    found = source.find_source()
    assert found.tarball == in_target
    assert found.identity == f"sha256:{source.sha256_file(in_target)}"
    given = make_tarball(sandbox / "mine.tar.xz", (6, 1, 192))
    assert source.find_source(str(given)).tarball == given
    monkeypatch.setenv("KERNEL_TARBALL", str(given))
    assert source.find_source().tarball == given


def test_find_source_rejects_a_tarball_of_another_version(sandbox: Path) -> None:
    other = make_tarball(sandbox / "linux-6.1.100.tar.xz", (6, 1, 100))
    with pytest.raises(
        BuildError, match=re.escape("holds kernel 6.1.100, but kernel.version pins 6.1.192")
    ):
        source.find_source(str(other))
    with pytest.raises(BuildError, match="does not exist"):
        source.find_source(str(sandbox / "missing.tar.xz"))


def test_find_source_skips_a_debian_tarball_of_another_point_release(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tarball(sandbox / "usr-src" / "linux-source-6.1.tar.xz", (6, 1, 190))
    monkeypatch.setattr(source, "download", no_download)
    with pytest.raises(BuildError) as err:
        source.find_source()
    message = str(err.value)
    assert "holds 6.1.190, not 6.1.192" in message
    assert "KERNEL_TARBALL=" in message
    assert "apt-get install linux-source-6.1" in message
    assert "cdn.kernel.org" in message
    assert "network disabled in tests" in message


def test_find_source_downloads_when_nothing_is_local(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def fake_download(version: str) -> Path:
        fetched.append(version)
        (sandbox / "target").mkdir(exist_ok=True)
        return make_tarball(sandbox / "target" / f"linux-{version}.tar.xz", (6, 1, 192))

    monkeypatch.setattr(source, "download", fake_download)
    assert source.find_source().origin == "kernel.org"
    assert fetched == ["6.1.192"]


SUMS = """-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

{other}  linux-6.1.191.tar.xz
{sha}  linux-6.1.192.tar.xz
{other}  linux-6.1.192.tar.gz
-----BEGIN PGP SIGNATURE-----
iQIzBAEBCAAdFiEE
-----END PGP SIGNATURE-----
"""


def test_parse_sha256sums() -> None:
    text = SUMS.format(sha="a" * 64, other="b" * 64)
    assert source.parse_sha256sums(text, "linux-6.1.192.tar.xz") == "a" * 64
    assert source.parse_sha256sums(text, "linux-6.1.193.tar.xz") is None


def fake_curl(files: dict[str, bytes]) -> Callable[..., Any]:
    """A stand-in for tools.run that 'downloads' from a dict (tests never touch the network)."""

    def run(argv: Sequence[str], **_: Any) -> None:
        assert argv[0] == "curl"
        url = argv[-1]
        assert url.startswith("https://cdn.kernel.org/pub/linux/kernel/v6.x/"), url
        Path(argv[argv.index("--output") + 1]).write_bytes(files[url.rsplit("/", 1)[1]])

    return run


def test_download_verifies_against_sha256sums(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = make_tarball(sandbox / "src.tar.xz", (6, 1, 192)).read_bytes()
    good = {
        "linux-6.1.192.tar.xz": tarball,
        "sha256sums.asc": SUMS.format(sha=_sha(tarball), other="b" * 64).encode(),
    }
    monkeypatch.setattr(tools, "run", fake_curl(good))
    dest = source.download("6.1.192")
    assert dest == sandbox / "target" / "linux-6.1.192.tar.xz"
    assert dest.read_bytes() == tarball
    assert sorted(p.name for p in dest.parent.iterdir()) == ["linux-6.1.192.tar.xz"]

    dest.unlink()
    bad = dict(good, **{"linux-6.1.192.tar.xz": tarball + b"tampered"})
    monkeypatch.setattr(tools, "run", fake_curl(bad))
    with pytest.raises(BuildError, match="has sha256"):
        source.download("6.1.192")
    assert list(dest.parent.iterdir()) == []  # nothing unverified is kept


def test_download_prefers_a_pinned_sha256(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = b"not really a tarball"
    monkeypatch.setattr(source, "PINNED_SHA256", {"6.1.192": "0" * 64})
    monkeypatch.setattr(tools, "run", fake_curl({"linux-6.1.192.tar.xz": tarball}))
    with pytest.raises(BuildError, match="expected 0000"):
        source.download("6.1.192")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_unpack_strips_the_top_dir_and_reunpacks_only_on_change(sandbox: Path) -> None:
    first = make_tarball(sandbox / "a.tar.xz", (6, 1, 192), top="linux-source-6.1")
    src = source.Source(first, "sha256:a", "test")
    tree = source.unpack(src, "6.1.192")
    assert (tree / "Makefile").is_file() and (tree / "README").is_file()
    (tree / "build").mkdir()
    (tree / "build" / "object.o").write_text("kept while the stamp matches")
    source.unpack(src, "6.1.192")
    assert (tree / "build" / "object.o").exists()
    source.unpack(source.Source(first, "sha256:b", "test"), "6.1.192")  # other tarball
    assert not (tree / "build").exists()
    (tree / "build").mkdir()
    source.unpack(source.Source(first, "sha256:b", "test"), "6.1.193")  # other version
    assert not (tree / "build").exists()


PATCH = """Why: the README says hello.

--- a/README
+++ b/README
@@ -1 +1 @@
-{old}
+{new}
"""


def test_unpack_applies_the_patches_and_reunpacks_when_they_change(sandbox: Path) -> None:
    tarball = make_tarball(sandbox / "a.tar.xz", (6, 1, 192), top="linux-source-6.1")
    src = source.Source(tarball, "sha256:a", "test")
    original = source.unpack(src, "6.1.192").joinpath("README").read_text().strip()
    assert patches.identity() == ""
    (sandbox / "kernel.patches").mkdir()
    patch = sandbox / "kernel.patches" / "0001-hello.patch"
    patch.write_text(PATCH.format(old=original, new="patched"))
    tree = source.unpack(src, "6.1.192")  # the stamp names other patches: unpacked again
    assert (tree / "README").read_text() == "patched\n"
    (tree / "build").mkdir()
    source.unpack(src, "6.1.192")
    assert (tree / "build").exists()  # same patches, same tree
    patch.write_text(PATCH.format(old=original, new="patched again"))
    source.unpack(src, "6.1.192")
    assert (tree / "README").read_text() == "patched again\n" and not (tree / "build").exists()


def test_a_patch_that_does_not_apply_fails_the_unpack(sandbox: Path) -> None:
    tarball = make_tarball(sandbox / "a.tar.xz", (6, 1, 192), top="linux-source-6.1")
    (sandbox / "kernel.patches").mkdir()
    (sandbox / "kernel.patches" / "0001-stale.patch").write_text(
        PATCH.format(old="a line the README does not have", new="x"))
    with pytest.raises(BuildError, match="patch"):
        source.unpack(source.Source(tarball, "sha256:a", "test"), "6.1.192")
    assert not (sandbox / "kernel" / source.STAMP_NAME).exists()  # redone next time


def test_remove_source(sandbox: Path) -> None:
    (sandbox / "kernel").mkdir()
    (sandbox / "target").mkdir()
    (sandbox / "target" / "linux-6.1.192.tar.xz").write_text("x")
    (sandbox / "target" / "bzImage").write_text("x")
    source.remove_source()
    assert not (sandbox / "kernel").exists()
    assert [p.name for p in (sandbox / "target").iterdir()] == ["bzImage"]


# --- reproducibility and cache --------------------------------------------------------------


def test_build_env_is_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    epoch = bzimage.build_epoch()
    assert epoch == 1700000000
    env = bzimage.build_env(epoch)
    assert env["KBUILD_BUILD_TIMESTAMP"] == "Tue Nov 14 22:13:20 UTC 2023"
    assert env["KBUILD_BUILD_USER"] == "mvirt"
    assert env["KBUILD_BUILD_HOST"] == "mvirt-one"
    assert env["KBUILD_BUILD_VERSION"] == "1"


def test_cache_key_covers_every_input() -> None:
    src = source.Source(Path("/x.tar.xz"), "debian:linux-source-6.1=6.1.192-2", "test")
    base = bzimage.key_inputs("6.1.192", src, 1, "CONFIG_A=y\n")
    key = cache.key(base)
    assert key == cache.key(bzimage.key_inputs("6.1.192", src, 1, "CONFIG_A=y\n"))
    variants = [
        bzimage.key_inputs("6.1.193", src, 1, "CONFIG_A=y\n"),
        bzimage.key_inputs(
            "6.1.192", source.Source(src.tarball, "sha256:0", ""), 1, "CONFIG_A=y\n"
        ),
        bzimage.key_inputs("6.1.192", src, 2, "CONFIG_A=y\n"),
        bzimage.key_inputs("6.1.192", src, 1, "CONFIG_A=n\n"),
    ]
    assert len({cache.key(v) for v in variants} | {key}) == 5
    assert base["patches"] == patches.identity() != ""  # kernel.patches/ is in the key
    assert any(line.startswith("gcc") for line in base["toolchain"])
    assert any("ld" in line for line in base["toolchain"])


def test_build_on_a_cache_hit_only_copies(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fragment = sandbox / "kernel.config"
    fragment.write_text("CONFIG_SMP=y\n")
    monkeypatch.setattr(kconfig, "FRAGMENT_FILE", fragment)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    src = source.Source(sandbox / "src.tar.xz", "sha256:feed", "test")
    monkeypatch.setattr(source, "find_source", lambda tarball="": src)

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not unpack, configure or compile")

    for module, step in ((source, "unpack"), (kconfig, "configure"), (bzimage, "compile_kernel")):
        monkeypatch.setattr(module, step, no_work)
    entry = bzimage.cache_entry(bzimage.key_inputs("6.1.192", src, 1, "CONFIG_SMP=y\n"))
    entry.path.mkdir(parents=True)
    for name in bzimage.OUTPUTS:
        (entry.path / name).write_text(f"cached {name}\n")

    bzimage.build()
    for name in bzimage.OUTPUTS:
        assert (sandbox / "target" / name).read_text() == f"cached {name}\n"
    assert not list((sandbox / "target").glob(".*.tmp"))

    fragment.write_text("CONFIG_SMP=n\n")  # another config is another key: a miss, so work
    with pytest.raises(AssertionError, match="must not unpack"):
        bzimage.build()


def test_store_is_atomic_and_keeps_the_first_entry(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = sandbox / "kernel"
    objdir = tree / "build"
    (objdir / "arch/x86/boot").mkdir(parents=True)
    (objdir / "arch/x86/boot/bzImage").write_bytes(b"\x4d\x5a kernel")
    (objdir / ".config").write_text("CONFIG_SMP=y\n")
    monkeypatch.setattr(tools, "output", lambda argv, **kw: "6.1.192")
    entry = bzimage.cache_entry({"input": "k"})
    entry.store(lambda dest: bzimage.collect(tree, objdir, dest))
    assert (entry.path / "bzImage").read_bytes() == b"\x4d\x5a kernel"
    assert (entry.path / "kernel.release").read_text() == "6.1.192\n"
    assert (entry.path / "kernel.config").read_text() == "CONFIG_SMP=y\n"
    assert json.loads((entry.path / cache.INPUTS_NAME).read_text()) == {"input": "k"}
    (objdir / "arch/x86/boot/bzImage").write_bytes(b"second")
    entry.store(lambda dest: bzimage.collect(tree, objdir, dest))  # same key stored twice
    assert (entry.path / "bzImage").read_bytes() == b"\x4d\x5a kernel"
    assert [p.name for p in entry.path.parent.iterdir()] == [entry.path.name]  # no temp dirs left


# --- the real kconfig (needs the kernel source; no compiling) --------------------------------


@pytest.fixture(scope="session")
def kernel_tree() -> Path:
    """The unpacked source for kernel.version (unpacked now if the build has not done it)."""
    return source.ensure_source()


@pytest.mark.host
def test_fragment_survives_tinyconfig_and_olddefconfig(kernel_tree: Path, tmp_path: Path) -> None:
    got = kconfig.generate_config(kernel_tree, tmp_path / "o", kconfig.FRAGMENT_FILE)
    wanted = kconfig.parse_config(kconfig.FRAGMENT_FILE.read_text())
    assert len(wanted) > 50
    assert kconfig.dropped_options(wanted, got) == {}


@pytest.mark.host
def test_impossible_options_are_reported_as_dropped(kernel_tree: Path, tmp_path: Path) -> None:
    fragment = tmp_path / "kernel.config"
    impossible = (
        "CONFIG_USB_STORAGE=y\n"  # needs USB, which tinyconfig leaves off
        'CONFIG_CMDLINE="console=ttyS0"\n'  # needs CMDLINE_BOOL
        "# CONFIG_64BIT is not set\n"  # ARCH=x86_64 forces it on
        "CONFIG_NO_SUCH_SYMBOL=y\n"  # not in this kernel at all
    )
    fragment.write_text(kconfig.FRAGMENT_FILE.read_text() + impossible)
    with pytest.raises(BuildError) as err:
        kconfig.configure(kernel_tree, tmp_path / "o", fragment)
    message = str(err.value)
    for line in [
        "CONFIG_USB_STORAGE: wanted y, got n",
        'CONFIG_CMDLINE: wanted "console=ttyS0", got n',
        "CONFIG_64BIT: wanted n, got y",
        "CONFIG_NO_SUCH_SYMBOL: wanted y, got n",
    ]:
        assert line in message
    assert message.count(": wanted ") == 4  # the rest of kernel.config survived


def scripts_config(tree: Path, *args: str) -> Callable[[Path], None]:
    def edit(config: Path) -> None:
        tools.run([tree / "scripts" / "config", "--file", config, *args])

    return edit


@pytest.mark.host
def test_config_edit_is_folded_back_into_the_fragment(kernel_tree: Path, tmp_path: Path) -> None:
    objdir = tmp_path / "o"
    fragment = tmp_path / "kernel.config"
    shutil.copyfile(kconfig.FRAGMENT_FILE, fragment)
    repo_fragment = kconfig.FRAGMENT_FILE.read_text()
    kconfig.configure(kernel_tree, objdir, fragment)
    # VIRTIO_INPUT is new: appended under the header. VETH is in the fragment: its line is
    # rewritten in place. TMPFS off hides TMPFS_XATTR and TMPFS_POSIX_ACL, which it also names.
    edit = scripts_config(
        kernel_tree, "--enable", "VIRTIO_INPUT", "--disable", "VETH", "--disable", "TMPFS"
    )
    changes = menuconfig.apply_config_edit(kernel_tree, objdir, fragment, edit)

    assert changes["CONFIG_VIRTIO_INPUT"] == "y"
    assert changes["CONFIG_VETH"] == "n"
    assert changes["CONFIG_TMPFS"] == "n"
    assert changes["CONFIG_TMPFS_XATTR"] == "n"
    assert changes["CONFIG_TMPFS_POSIX_ACL"] == "n"
    text = fragment.read_text()
    assert "CONFIG_VETH=y" not in text and "# CONFIG_VETH is not set" in text
    assert text.index("# CONFIG_VETH is not set") < text.index(menuconfig.MENUCONFIG_HEADER)
    assert text.index(menuconfig.MENUCONFIG_HEADER) < text.index("CONFIG_VIRTIO_INPUT=y")
    # the folded fragment reproduces the edit on its own (as after distclean), with no drops
    got = kconfig.configure(kernel_tree, tmp_path / "fresh", fragment)
    assert got["CONFIG_VIRTIO_INPUT"] == "y"
    assert got.get("CONFIG_VETH", "n") == "n"
    assert got.get("CONFIG_TMPFS", "n") == "n"
    assert kconfig.FRAGMENT_FILE.read_text() == repo_fragment  # the repository's file untouched


@pytest.mark.host
def test_built_kernel_matches_the_fragment() -> None:
    """The kernel `doit kernel` put in target/ has what kernel.config asks for (no build here)."""
    built = paths.TARGET / "kernel.config"
    if not built.exists():
        pytest.skip("no target/kernel.config: run `doit kernel` first")
    wanted = kconfig.parse_config(kconfig.FRAGMENT_FILE.read_text())
    got = kconfig.parse_config(built.read_text())
    assert kconfig.dropped_options(wanted, got) == {}
    release = (paths.TARGET / "kernel.release").read_text().strip()
    assert release == source.kernel_version()
    assert (paths.TARGET / "bzImage").read_bytes()[0x202:0x206] == b"HdrS"  # x86 boot header


def test_no_stray_environment_leaks_into_kconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCONFIG_CONFIG", "/elsewhere/.config")
    env = kconfig.make_env()
    assert env["KCONFIG_CONFIG"] == ".config"
    assert env["LOCALVERSION"] == ""
    assert os.environ["KCONFIG_CONFIG"] == "/elsewhere/.config"


def test_tarball_version_of_a_broken_file_is_a_build_error(tmp_path: Path) -> None:
    broken = tmp_path / "linux-6.1.192.tar.xz"
    broken.write_bytes(b"\xfd7zXZ\x00 truncated download")
    with pytest.raises(BuildError, match="cannot read it as a tarball"):
        source.tarball_version(broken)


def test_the_built_kernel_asks_the_efi_stub_for_at_most_12_mib() -> None:
    """kernel.patches/0001: without the 2 MiB padding around text and rodata the buffer the EFI
    stub decompresses into (init_size, rounded up to 2 MiB) is 12 MiB instead of 14 or 16."""
    built = paths.TARGET / "bzImage"
    if not built.exists():
        pytest.fail("target/bzImage missing: run `make one` first")
    init_size = int.from_bytes(built.read_bytes()[0x260:0x264], "little")  # boot protocol 2.10
    assert init_size <= 12 * 2**20, f"init_size {init_size / 2**20:.2f} MiB"
