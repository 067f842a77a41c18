"""The supervision-tree example of the docs (guides/supervision.md) runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "supervision.md"


def test_readme_supervision_example_runs() -> None:
    section = PAGE.read_text()
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    done = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "invoice: order-1"
    assert lines[-1] == "rows for order-2"
    assert "  consumer [actor transient] RUNNING restarts=0 mailbox=0" in lines
