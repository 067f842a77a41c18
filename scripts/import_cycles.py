"""List the import cycles of the ``troupe`` package (strongly connected modules).

Usage: ``python import_cycles.py MAX`` with the package importable; exits 1 when a
cycle in the core or in ``troupe.brokers`` joins more than MAX modules.
"""

from __future__ import annotations

import sys

import grimp


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(module: str) -> None:
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def in_scope(module: str) -> bool:
    """The core (troupe.*, not an upper layer) or troupe.brokers (not its task queue)."""
    upper = ("troupe.actors", "troupe.supervisors", "troupe.examples", "troupe.brokers.tasks")
    return not module.startswith(upper)


def main() -> int:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    graph = grimp.build_graph("troupe", exclude_type_checking_imports=True)
    failed = False
    for component in cycles(graph):
        scoped = [m for m in component if in_scope(m)]
        too_big = len(scoped) > limit
        failed |= too_big
        print(f"{'TOO BIG ' if too_big else ''}cycle of {len(component)}: {', '.join(component)}")
    if not failed:
        print(f"no import cycle of more than {limit} modules in the core or troupe.brokers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
