"""The kernel configuration: tinyconfig + kernel.config + olddefconfig, checked, and kbuild's make.

tinyconfig turns off everything it can; kernel.config (a fragment) asks for what the guest needs;
olddefconfig fills in the rest. kconfig silently drops a requested option whose dependencies are
off, so the result is checked against the fragment and the build fails naming each dropped option.

Objects go to an O= directory (kernel/build/ for the real build), not into the source tree: the
source stays pristine, so tests and scratch configurations can use their own O= directory, and
kbuild names sources relative to the tree (`..`), so the clone's path never reaches the image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from onebuild import paths, tools
from onebuild.tools import BuildError

ARCH = "x86_64"  # the fragment and the UKI stub are x86-64 only
FRAGMENT_FILE = paths.ROOT / "kernel.config"
BUILD_SUBDIR = "build"  # kbuild's O= inside the tree (kbuild then refers to sources as `..`)

_SET = re.compile(r"^(CONFIG_\w+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")


# --- kbuild ----------------------------------------------------------------------------------


def make_env() -> dict[str, str]:
    # KCONFIG_CONFIG pinned: a value left in the user's environment would redirect every step.
    # LOCALVERSION set (even empty) stops setlocalversion from appending "+" inside a git checkout.
    return {"ARCH": ARCH, "KCONFIG_CONFIG": ".config", "LOCALVERSION": ""}


def make_argv(tree: Path, objdir: Path, *targets: str) -> list[str | os.PathLike[str]]:
    # Absolute O= so it means the same from any cwd; kbuild still sees a subdirectory of the tree
    # (kernel/build) and then refers to sources as `..`, keeping the clone's path out of the image.
    return ["make", "--no-print-directory", "-C", tree.resolve(), f"O={objdir.resolve()}", *targets]


def make(
    tree: Path,
    objdir: Path,
    *targets: str,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
) -> None:
    argv = make_argv(tree, objdir, *targets)
    tools.run(argv, env={**make_env(), **(env or {})}, capture=capture)


# --- parse, format, check ---------------------------------------------------------------------


def parse_config(text: str) -> dict[str, str]:
    """Kconfig lines as {"CONFIG_X": value}; `# CONFIG_X is not set` is "n", the rest ignored.

    A symbol that appears twice keeps its last value, as kconfig and merge_config.sh do.
    """
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _SET.match(line):
            options[match[1]] = match[2]
        elif match := _UNSET.match(line):
            options[match[1]] = "n"
    return options


def format_option(symbol: str, value: str) -> str:
    return f"# {symbol} is not set" if value == "n" else f"{symbol}={value}"


def dropped_options(
    wanted: Mapping[str, str], got: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """{symbol: (wanted, got)} for every requested value the final config does not have.

    A symbol missing from the final config is "n": kconfig omits symbols whose dependencies are
    off, which is exactly the case this check is for.
    """
    return {
        symbol: (value, got.get(symbol, "n"))
        for symbol, value in wanted.items()
        if got.get(symbol, "n") != value
    }


def check_config(wanted: Mapping[str, str], got: Mapping[str, str]) -> None:
    dropped = dropped_options(wanted, got)
    if dropped:
        lines = [f"  {symbol}: wanted {w}, got {g}" for symbol, (w, g) in sorted(dropped.items())]
        raise BuildError(
            "kconfig dropped options kernel.config asks for (a dependency is off, or the symbol "
            "does not exist in this kernel); enable what they depend on or remove them:\n"
            + "\n".join(lines)
        )


# --- generate ---------------------------------------------------------------------------------


def generate_config(tree: Path, objdir: Path, fragment: Path) -> dict[str, str]:
    """objdir/.config = tinyconfig + `fragment` + olddefconfig; returns it parsed (unchecked)."""
    objdir = objdir.resolve()
    objdir.mkdir(parents=True, exist_ok=True)
    # tinyconfig merges its own fragments and narrates every override: noise unless it fails
    make(tree, objdir, "-s", "tinyconfig", capture=True)
    # -m: only merge; olddefconfig below then fills in what the fragment made visible.
    tools.run(
        [
            tree / "scripts/kconfig/merge_config.sh",
            "-m",
            "-O",
            objdir,
            ".config",
            fragment.resolve(),
        ],
        cwd=objdir,
        env=make_env(),
        capture=True,
    )
    make(tree, objdir, "-s", "olddefconfig")
    return parse_config((objdir / ".config").read_text())


def configure(tree: Path, objdir: Path, fragment: Path | None = None) -> dict[str, str]:
    """generate_config, then fail if any option the fragment sets did not survive."""
    fragment = fragment or FRAGMENT_FILE
    got = generate_config(tree, objdir, fragment)
    check_config(parse_config(fragment.read_text()), got)
    return got
