"""import-linter contract ``private_names``: packages use only each other's public names.

The layers contract says which package may import which; this one says *what*
they may use. A module of one package (the core ``troupe``, or one of the
listed ``packages``) must not, in another package,

- import a private module (``troupe._version``, ``troupe.brokers._wire``),
- import a private name (``from troupe.ref import _DEFAULT``),
- read a private attribute that another package defines and its own does not
  (``ref._cell``, ``cell._current``, ``self._cell()`` on an inherited runtime class).

Private means one leading underscore (dunders are public protocol). The
attribute check is by name: an attribute counts as the other package's when
that package assigns or defines it (``self._cell = ...``, ``def _cell``, a
``__slots__`` entry) and the using package never does; stdlib privates such as
``sys._getframe`` are not troupe's and pass. ``scripts/layers`` registers the
type (``contract_types`` in ``[tool.importlinter]``) and puts this file on the path.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


@dataclass(frozen=True)
class Violation:
    """One use of another package's private name."""

    module: str
    line: int
    what: str


def is_private(name: str) -> bool:
    """``_name`` is private; ``__dunder__`` and ``__main__`` are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class PrivateNamesContract(Contract):
    """Options: ``root`` (the core package, e.g. ``troupe``) and ``packages`` (the
    subpackages/modules that are packages of their own; every other module of
    ``root`` belongs to the core)."""

    type_name = "private_names"

    root = fields.StringField()
    packages = fields.ListField(subfield=fields.StringField())

    def package_of(self, module: str) -> str:
        """The package (a listed one, else ``root``) that ``module`` belongs to."""
        best = str(self.root)
        for package in self.packages:  # type: ignore[attr-defined]
            if (module == package or module.startswith(package + ".")) and len(package) > len(best):
                best = package
        return best

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.root)
        modules = sorted(m for m in graph.modules if m == root or m.startswith(root + "."))
        sources = {m: path for m in modules if (path := _source(root, m)) is not None}
        defined: dict[str, set[str]] = {}
        for module, path in sources.items():
            defined.setdefault(self.package_of(module), set()).update(_defines(path))
        violations: list[Violation] = []
        for module, path in sources.items():
            mine = self.package_of(module)
            others = set().union(*(names for pkg, names in defined.items() if pkg != mine))
            violations.extend(
                self._check_module(module, path, mine, defined.get(mine, set()), others)
            )
        return ContractCheck(
            kept=not violations,
            metadata={"violations": [(v.module, v.line, v.what) for v in violations]},
        )

    def _check_module(
        self, module: str, path: Path, mine: str, own: set[str], others: set[str]
    ) -> list[Violation]:
        found: list[Violation] = []
        tree = _parse(path)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _absolute(module, is_package, node)
                if target is None or not target.startswith(str(self.root)):
                    continue
                if self.package_of(target) != mine:
                    if any(is_private(part) for part in target.split(".")):
                        found.append(Violation(module, node.lineno, f"imports module {target}"))
                    for alias in node.names:
                        if is_private(alias.name):
                            found.append(
                                Violation(module, node.lineno, f"imports {target}.{alias.name}")
                            )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    if (
                        target.startswith(str(self.root))
                        and self.package_of(target) != mine
                        and any(is_private(part) for part in target.split("."))
                    ):
                        found.append(Violation(module, node.lineno, f"imports module {target}"))
            elif (
                isinstance(node, ast.Attribute)
                and is_private(node.attr)
                and node.attr not in own
                and node.attr in others
            ):
                found.append(Violation(module, node.lineno, f"uses private attribute .{node.attr}"))
        return sorted(set(found), key=lambda v: (v.line, v.what))

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, what in check.metadata["violations"]:
            output.print_error(f"{module}:{line} {what}", bold=False)
            output.new_line()


def _source(root: str, module: str) -> Path | None:
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)))
    parts = module.split(".")[1:]
    for candidate in (
        base.joinpath(*parts, "__init__.py"),
        base.joinpath(*parts).with_suffix(".py"),
    ):
        if parts and candidate.is_file():
            return candidate
    return base / "__init__.py" if not parts else None


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _defines(path: Path) -> set[str]:
    """Private names a module assigns, defines or lists in ``__slots__``."""
    names: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.isidentifier()
        ):
            names.add(node.value)  # __slots__ entries, setattr names
    return {name for name in names if is_private(name)}


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    if node.module:
        parts.append(node.module)
    return ".".join(parts) or None
