"""The import-linter contracts of ``scripts/layers`` catch what they promise to.

The real tree is checked by CI (``.ci/run``); here a copy of the layout gets a few
modules that break the rules, and each contract must name its offender.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BAD_MODULES = {
    # the core imports an upper layer
    "zz_core_up.py": "from troupe.supervisors import Supervisor\n",
    # a lower layer imports a higher one
    "supervisors/zz_up.py": "from troupe.brokers import MemoryBroker\n",
    # private names and attributes of another package
    "actors/zz_private.py": (
        "from troupe.ref import _hidden\n"
        "from troupe import _version\n"
        "def peek(ref):\n"
        "    return ref._troupe_test_private_attr\n"
    ),
    # the core defines the private attribute the module above reads
    "zz_core_private.py": (
        "class Holder:\n    def __init__(self):\n        self._troupe_test_private_attr = 1\n"
    ),
}


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'scripts'}"}
    lint_imports = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [
            sys.executable, "-c", lint_imports, "--no-cache", "--no-logo",
            str(ROOT / "pyproject.toml"),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_contract_names_its_offender(tmp_path: Path) -> None:
    package = tmp_path / "troupe"
    shutil.copytree(ROOT / "runtime", package, ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("actors", "brokers", "supervisors", "examples"):
        shutil.copytree(ROOT / sub, package / sub, ignore=shutil.ignore_patterns("__pycache__"))
    for relative, code in BAD_MODULES.items():
        (package / relative).write_text(code)
    done = lint(tmp_path)
    out = " ".join(done.stdout.split())
    assert done.returncode != 0, done.stdout
    assert "troupe.zz_core_up is not allowed to import troupe.supervisors" in out
    assert "troupe.supervisors is not allowed to import troupe.brokers" in out
    assert "troupe.supervisors.zz_up -> troupe.brokers" in out
    assert "troupe.actors.zz_private:1 imports troupe.ref._hidden" in out
    assert "troupe.actors.zz_private:2 imports troupe._version" in out
    assert "troupe.actors.zz_private:4 uses private attribute ._troupe_test_private_attr" in out
