"""What a process-tree target may name, and the errors for what it may not."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import process_tree_targets as targets  # noqa: E402

from troupe import ActorSystem  # noqa: E402
from troupe.errors import ConfigError  # noqa: E402
from troupe.supervisors.process_spec import ProcessSpec  # noqa: E402
from troupe.supervisors.process_target import (  # noqa: E402
    TargetError,
    TreeKind,
    classify,
    resolve,
)


@pytest.mark.parametrize(
    ("attribute", "kind"),
    [
        ("build", TreeKind.BUILD),
        ("busy", TreeKind.BUILD),
        ("Worker", TreeKind.ACTOR),
        ("make_worker_tree", TreeKind.FACTORY),
        ("supervised", TreeKind.SUPERVISOR),
    ],
)
def test_kinds_of_tree(attribute: str, kind: TreeKind) -> None:
    tree = resolve(f"process_tree_targets:{attribute}")
    assert tree.kind is kind
    assert tree.obj is getattr(targets, attribute)


def test_not_trees() -> None:
    with pytest.raises(TargetError, match="not an Actor subclass"):
        classify(dict, "x:dict")
    with pytest.raises(TargetError, match="2 required parameters"):
        classify(lambda a, b: None, "x:f")
    with pytest.raises(TargetError, match="of type str, not a tree"):
        classify("hello", "x:s")


def test_an_import_error_inside_the_module_is_not_reported_as_a_missing_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_missing_dep.py").write_text("import not_installed_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TargetError, match="importing module 'needs_missing_dep' failed"):
        resolve("needs_missing_dep:tree")


async def test_each_kind_builds_in_a_system() -> None:
    async with ActorSystem("t") as system:
        assert await resolve("process_tree_targets:build").build(system) is None
        assert system.find("worker") is not None
    async with ActorSystem("t") as system:
        root = await resolve("process_tree_targets:make_worker_tree").build(system)
        assert root is not None and root.name == "Worker"
    async with ActorSystem("t") as system:
        root = await resolve("process_tree_targets:supervised").build(system)
        assert root is not None and root.name == "workers"
        for _ in range(100):
            if system.find("worker") is not None:
                break
            await asyncio.sleep(0.01)
        assert system.find("worker") is not None


def test_spec_accepts_a_function_and_validates() -> None:
    spec = ProcessSpec(targets.build, count=2)
    assert spec.target == "process_tree_targets:build"
    assert spec.process_names() == ["build-0", "build-1"]
    with pytest.raises(ConfigError, match="count"):
        ProcessSpec("a:b", count=0)
    with pytest.raises(ConfigError, match="restart"):
        ProcessSpec("a:b", restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"package\.module:attribute"):
        ProcessSpec("nocolon")
    with pytest.raises(ConfigError, match="module level"):
        ProcessSpec(lambda system: None)
