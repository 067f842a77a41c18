"""Import paths (``package.module:attribute``) and the trees they name.

A *tree* is what one child process of a :class:`ProcessSupervisor` runs in its
own :class:`~troupe.ActorSystem`. A target may name:

- a ``build(system)`` function (``def`` or ``async def``) that spawns the
  process's actors; the process runs until it is told to stop;
- an :class:`~troupe.Actor` subclass, spawned as the process's root actor;
  the process ends when that actor stops (exit status 0 after a normal stop,
  1 after a failure);
- an actor supervisor spec (``troupe.supervisors.spec.SupervisorSpec``), spawned
  (``spec.spawn(system)``) as the root actor the same way;
- a function without parameters that returns one of the above (called in the
  child process).

``resolve`` imports the target and tells which kind it is without calling
anything, so a bad path fails early in the parent with a message that says
what to fix.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from troupe.errors import TroupeError

if TYPE_CHECKING:
    from troupe import ActorRef, ActorSystem

TREE_KINDS_HELP = (
    "a tree is a build(system) function (def or async def), an Actor subclass, "
    "an actor supervisor spec, or a function without parameters that returns one of these"
)


class TargetError(TroupeError):
    """An import path does not exist or does not name a tree; the message says what to fix."""


class TreeKind(StrEnum):
    """What a target names."""

    BUILD = "build"  # build(system), sync or async
    ACTOR = "actor"  # an Actor subclass, spawned as the root actor
    SUPERVISOR = "supervisor"  # an actor supervisor spec, spawned as the root actor
    FACTORY = "factory"  # a function without parameters returning one of the above


@dataclass(frozen=True)
class Tree:
    """A resolved target: its path, its kind and the object it names."""

    target: str
    kind: TreeKind
    obj: Any

    async def build(self, system: ActorSystem) -> ActorRef | None:
        """Spawn the tree in ``system``; returns the root actor's ref when there is one."""
        tree = self
        if tree.kind is TreeKind.FACTORY:
            made = tree.obj()
            if inspect.isawaitable(made):
                made = await made
            tree = classify(made, f"{self.target}()")
            if tree.kind is TreeKind.FACTORY:
                raise TargetError(
                    f"{self.target}() returned another function without parameters; "
                    f"it must return the tree itself ({TREE_KINDS_HELP})"
                )
        if tree.kind is TreeKind.BUILD:
            result = tree.obj(system)
            if inspect.isawaitable(result):
                await result
            return None
        if tree.kind is TreeKind.SUPERVISOR:
            spawn: Callable[[ActorSystem], ActorRef] = tree.obj.spawn
            return spawn(system)
        return system.spawn(tree.obj, name=tree.obj.__name__)


def split(target: str) -> tuple[str, str]:
    """``"pkg.mod:attr"`` -> ``("pkg.mod", "attr")``; TargetError when malformed."""
    module, sep, attribute = target.partition(":")
    if not sep or not module or not attribute or ":" in attribute:
        raise TargetError(
            f"{target!r} is not an import path; write it as 'package.module:attribute', "
            "e.g. 'myapp.workers:tree'"
        )
    return module.strip(), attribute.strip()


def load(target: str) -> Any:
    """Import ``package.module`` and return its ``attribute`` (dots walk into objects)."""
    module_name, attribute = split(target)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise TargetError(
                f"cannot import {target!r}: there is no module named {missing!r}. "
                "Check the spelling, and run from the directory that contains the package "
                "(troupe run adds the current directory to the import path) or set PYTHONPATH"
            ) from exc
        raise TargetError(
            f"cannot import {target!r}: importing module {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise TargetError(
            f"cannot import {target!r}: importing module {module_name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            candidates = _candidates(module)
            hint = f"; trees it defines: {', '.join(candidates)}" if candidates else ""
            raise TargetError(
                f"cannot find {attribute!r} in module {module_name!r} (from {target!r}){hint}"
            ) from None
    return obj


def resolve(target: str) -> Tree:
    """Import ``target`` and classify it; TargetError when it does not name a tree."""
    return classify(load(target), target)


def classify(obj: Any, target: str) -> Tree:
    """The :class:`Tree` for an object; TargetError when it is not a tree."""
    from troupe import Actor

    if isinstance(obj, type):
        if issubclass(obj, Actor):
            return Tree(target, TreeKind.ACTOR, obj)
        raise TargetError(
            f"{target!r} names the class {obj.__qualname__}, which is not an Actor subclass; "
            f"{TREE_KINDS_HELP}"
        )
    if _is_supervisor_spec(obj):
        return Tree(target, TreeKind.SUPERVISOR, obj)
    if callable(obj):
        required = _required_positional(obj)
        if required == 1:
            return Tree(target, TreeKind.BUILD, obj)
        if required == 0:
            return Tree(target, TreeKind.FACTORY, obj)
        raise TargetError(
            f"{target!r} is a function with {required} required parameters; a build function "
            f"takes exactly one, the ActorSystem ({TREE_KINDS_HELP})"
        )
    raise TargetError(
        f"{target!r} names an object of type {type(obj).__name__}, not a tree; {TREE_KINDS_HELP}"
    )


def path_of(obj: Any) -> str:
    """The import path of a module-level function or class, for use as a target."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TargetError(
            f"{obj!r} has no import path; pass 'package.module:attribute' or define it at "
            "module level"
        )
    if module == "__main__":
        raise TargetError(
            f"{qualname} is defined in __main__, which a child process cannot import; "
            "move it into an importable module"
        )
    return f"{module}:{qualname}"


def _required_positional(fn: Callable[..., Any]) -> int | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(
        1
        for p in signature.parameters.values()
        if p.kind in kinds and p.default is inspect.Parameter.empty
    )


def _is_supervisor_spec(obj: Any) -> bool:
    try:
        spec_module = importlib.import_module("troupe.supervisors.spec")
    except ImportError:
        return False
    spec_type = getattr(spec_module, "SupervisorSpec", None)
    return isinstance(spec_type, type) and isinstance(obj, spec_type)


def _candidates(module: Any) -> list[str]:
    from troupe import Actor

    from .process_supervisor import ProcessSupervisor

    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, ProcessSupervisor) or _is_supervisor_spec(value):
            names.append(name)
            continue
        if getattr(value, "__module__", None) != module.__name__:
            continue
        is_actor = isinstance(value, type) and issubclass(value, Actor)
        is_function = inspect.isfunction(value) and _required_positional(value) in (0, 1)
        if is_actor or is_function:
            names.append(name)
    return sorted(names)
