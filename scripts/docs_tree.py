"""MkDocs hook: lay out the `troupe` import tree for mkdocstrings, as the package installs it.

The repository's folders are mapped into the one `troupe` namespace by the build
configuration (runtime/ is `troupe`, actors/ is `troupe.actors`, ...), so the source
tree has no `troupe/` folder for griffe to read. On every build (and `mkdocs serve`
rebuild) this hook links the folders into `.docs-src/troupe` (git-ignored) from
`[tool.setuptools.package-dir]` in pyproject.toml — the mapping pip installs — as
scripts/troupe-tree.sh does for mypy and import-linter; mkdocs.yml points the
python handler's `paths` there.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / ".docs-src"


def build_tree(root: Path = ROOT, tree: Path = TREE) -> Path:
    """(Re)make `tree/troupe` with symlinks into `root`; returns the package folder."""
    mapping: dict[str, str] = tomllib.loads((root / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"]
    if tree.exists():
        shutil.rmtree(tree)
    package = tree / "troupe"
    package.mkdir(parents=True)
    for entry in sorted((root / mapping["troupe"]).iterdir()):
        if entry.name != "__pycache__":
            os.symlink(entry, package / entry.name)
    for name, folder in mapping.items():
        if name == "troupe":
            continue
        link = tree.joinpath(*name.split("."))
        if link.is_symlink():
            link.unlink()  # a folder of the core that a subpackage mapping replaces
        os.symlink(root / folder, link)
    return package


@event_priority(100)  # before mkdocstrings reads its handler's `paths` (it drops missing ones)
def on_config(config: Any) -> Any:
    """MkDocs event: lay out the tree before any plugin looks for the package."""
    build_tree()
    return config
