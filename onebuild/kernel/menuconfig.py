"""menuconfig: edit the kernel configuration interactively and fold the change into kernel.config.

kernel.config is a fragment over tinyconfig, not a full .config, so an edit is written back as the
few lines that reproduce it: changed symbols the fragment names are rewritten in place, the rest
are appended under a header, and the result is regenerated until it gives the edited config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from onebuild.kernel import kconfig, source
from onebuild.kernel.kconfig import format_option, parse_config
from onebuild.tools import BuildError

MENUCONFIG_HEADER = "# added by menuconfig"


def changed_options(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """{symbol: new value} for every symbol whose value differs; absent counts as "n"."""
    symbols = sorted(set(old) | set(new))
    return {s: new.get(s, "n") for s in symbols if old.get(s, "n") != new.get(s, "n")}


def set_options(fragment_text: str, changes: Mapping[str, str]) -> str:
    """Rewrite the fragment's lines for `changes` in place; append the rest under a header."""
    out: list[str] = []
    done: set[str] = set()
    for line in fragment_text.splitlines():
        symbol = next(iter(parse_config(line)), "")
        if symbol in changes:
            out.append(format_option(symbol, changes[symbol]))
            done.add(symbol)
        else:
            out.append(line)
    new = {s: v for s, v in changes.items() if s not in done}
    if new:
        if MENUCONFIG_HEADER not in (line.strip() for line in out):
            if out and out[-1].strip():
                out.append("")
            out.append(MENUCONFIG_HEADER)
        out.extend(format_option(s, v) for s, v in sorted(new.items()))
    return "\n".join(out) + "\n"


def fold_back(fragment_text: str, old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """The fragment with the edit old → new (two full .configs) written into it.

    Written are changed symbols the fragment names, and those present in both configs (visible
    before and after the edit). A symbol only in `new` became visible through the edit (a new
    submenu, a `select`) and usually just takes its default, so it is left to kconfig;
    apply_config_edit regenerates and pins the ones that do not. A symbol only in `old` lost a
    dependency: implied, unless the fragment names it (the build would report it dropped).
    """
    mentioned = parse_config(fragment_text)
    changes = {
        s: v
        for s, v in changed_options(old, new).items()
        if s in mentioned or (s in old and s in new)
    }
    return set_options(fragment_text, changes)


def apply_config_edit(
    tree: Path, objdir: Path, fragment: Path, edit: Callable[[Path], None], *, rounds: int = 5
) -> dict[str, str]:
    """Let `edit` change objdir/.config, then fold the change into `fragment`.

    `edit` is menuconfig for users and scripts/config in tests. The fold-back is re-checked by
    regenerating from the new fragment: where tinyconfig + fragment + olddefconfig still differs
    from the edited config (a default that depends on the edit, say), that value is pinned too,
    until the fragment reproduces the edit. Returns what changed in the fragment.
    """
    config = objdir / ".config"
    old = parse_config(config.read_text())
    edit(config)
    # After menuconfig this changes nothing; after scripts/config it resolves dependencies.
    kconfig.make(tree, objdir, "-s", "olddefconfig")
    new = parse_config(config.read_text())
    original = fragment.read_text()
    text = fold_back(original, old, new)
    candidate = objdir / "kernel.config.candidate"
    try:
        for _ in range(rounds):
            candidate.write_text(text)
            got = kconfig.generate_config(tree, objdir, candidate)
            folded = fold_back(text, got, new)
            if folded == text:
                break
            text = folded
        else:
            raise BuildError(f"menuconfig: no fragment reproduced the edit in {rounds} rounds")
    finally:
        candidate.unlink(missing_ok=True)
    kconfig.check_config(parse_config(text), got)
    fragment.write_text(text)
    return changed_options(parse_config(original), parse_config(text))


def edit(tarball: str = "") -> None:
    """Edit the kernel configuration in menuconfig; the changes land in kernel.config."""
    tree = source.ensure_source(tarball)
    objdir = tree / kconfig.BUILD_SUBDIR
    fragment = kconfig.FRAGMENT_FILE
    # Start from exactly what kernel.config gives, so the diff is the user's edit only.
    kconfig.configure(tree, objdir, fragment)
    changes = apply_config_edit(
        tree, objdir, fragment, lambda _config: kconfig.make(tree, objdir, "menuconfig")
    )
    if not changes:
        print("menuconfig: no changes; kernel.config untouched")
        return
    print(f"menuconfig: wrote {len(changes)} option(s) to kernel.config:")
    for symbol, value in changes.items():
        print(f"  {format_option(symbol, value)}")
