"""The docs' remote-actor example (two processes over Redis) prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "docs" / "guides" / "remote.md"


def test_readme_remote_example_prints_what_it_says(tmp_path: Path) -> None:
    section = README.read_text().split("# Remote actors:", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    done = subprocess.run(
        [sys.executable, "-c", code.group(1)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "{'order': 1, 'total': 15}",
        "'orders.service' raised ValueError: qty must be at least 1",
    ]
