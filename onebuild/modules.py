"""Which source files a build step is made of, for doit's file_dep.

A step is a module of this package; what it produces depends on that module and on every module
of the package it imports, directly or through others. Reading the imports from the code (not
listing them by hand) means a new helper module is a dependency the moment a step imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from onebuild import paths

PACKAGE = "onebuild"


def _module_file(name: str) -> Path | None:
    """The file of module `name` ("onebuild.kernel.source"), or None if it is not one of ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = paths.ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.Module) -> set[str]:
    """Names of the modules an AST imports, including `from pkg import module` forms."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from onebuild import cache` imports the module onebuild.cache
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def step_sources(module: str) -> list[str]:
    """`module` and the package modules it imports (transitively), as sorted repo-relative paths.

    A module's package `__init__.py` files come with it: Python runs them on import.
    """
    if _module_file(module) is None:
        raise ValueError(f"{module} is not a module of {PACKAGE}")
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            pending.extend(_imported(ast.parse(path.read_text(), str(path))))
    return sorted(str(p.relative_to(paths.ROOT)) for p in seen)
