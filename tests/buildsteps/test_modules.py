"""file_dep from the code: a step depends on its module and every package module it imports."""

from __future__ import annotations

from pathlib import Path

import pytest

import dodo
from onebuild import modules, paths


def test_a_step_depends_on_the_shared_modules_it_imports() -> None:
    runtime = modules.step_sources("onebuild.runtime")
    for shared in ("tools.py", "paths.py", "hosttools.py", "cache.py", "__init__.py"):
        assert f"onebuild/{shared}" in runtime
    assert "onebuild/uki.py" not in runtime  # not imported: editing it must not rebuild crun


def test_a_step_in_a_subpackage_takes_the_package_init_and_its_siblings() -> None:
    kernel = modules.step_sources("onebuild.kernel.bzimage")
    for name in ("kernel/__init__.py", "kernel/bzimage.py", "kernel/source.py",
                 "kernel/kconfig.py", "cache.py", "tools.py"):
        assert f"onebuild/{name}" in kernel
    assert "onebuild/kernel/menuconfig.py" not in kernel


def test_imports_are_followed_transitively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "onebuild"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "step.py").write_text("from onebuild import helper\nimport json\n")
    (package / "helper.py").write_text("from onebuild.sub.deep import thing\n")
    (package / "sub" / "deep.py").write_text("import onebuild.leaf\nthing = 1\n")
    (package / "leaf.py").write_text("")
    (package / "unused.py").write_text("")
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    assert modules.step_sources("onebuild.step") == [
        "onebuild/__init__.py", "onebuild/helper.py", "onebuild/leaf.py", "onebuild/step.py",
        "onebuild/sub/__init__.py", "onebuild/sub/deep.py",
    ]
    with pytest.raises(ValueError, match="not a module"):
        modules.step_sources("onebuild.missing")


def test_every_build_task_lists_the_modules_of_its_step() -> None:
    for task, step in ((dodo.task_kernel, "onebuild.kernel.bzimage"),
                       (dodo.task_runtime, "onebuild.runtime"),
                       (dodo.task_init, "onebuild.freeze"),
                       (dodo.task_initramfs, "onebuild.initramfs"),
                       (dodo.task_uki, "onebuild.uki"),
                       (dodo.task_proto, "onebuild.proto")):
        assert set(modules.step_sources(step)) <= set(task()["file_dep"]), task.__name__
