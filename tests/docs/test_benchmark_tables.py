"""The benchmark tables on the docs site are rendered from the published JSON, never typed."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_tables"] = module
    spec.loader.exec_module(module)
    return module


def test_every_published_result_has_its_table_and_it_is_up_to_date() -> None:
    rendered = load_tables().tables()
    assert rendered, "benchmarks/published/ holds no result"
    for path, text in rendered.items():
        assert path.exists(), f"{path.name}: run python benchmarks/tables.py"
        assert path.read_text() == text, f"{path.name} is stale: run python benchmarks/tables.py"


def test_the_benchmarks_page_includes_every_table() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    included = set(re.findall(r'--8<-- "benchmarks/([\w-]+\.md)"', page))
    assert included == {path.name for path in load_tables().tables()}
