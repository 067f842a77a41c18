"""Every code example of the documentation site (docs/**/*.md) runs as written.

Each ```python block runs alone, in a fresh interpreter, in a temporary folder,
so a page needs no hidden setup and a new block is covered without touching
this file. Three markers change that, each written into the page itself:

- ```python title="myapp/workers.py" — a *file* block: it is written to that path
  in the folder of every later block of the page (so they can import it) and also
  runs alone, as any block does.
- a ``<!-- output -->`` line and a ```text block right after a block: the block's
  standard output must be exactly that text.
- a ``<!-- no-test -->`` line before a block: a fragment on purpose (the few
  allowed are counted below).

Blocks that need a broker start their own server (troupe.brokers.servers), so they
run wherever scripts/test can run. Each page names the versions it was tested with
(the snippet docs/_snippets/versions.md, checked against the code here).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import troupe

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "_snippets"
VERSIONS = SNIPPETS / "versions.md"
VERSIONS_INCLUDE = '--8<-- "versions.md"'
MAX_FRAGMENTS = 6

FENCE = re.compile(
    r"^(?P<before>(?:<!-- [a-z-]+ -->\n)?)```(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n"
    r"(?P<code>.*?)^```[ \t]*$",
    re.S | re.M,
)
OUTPUT = re.compile(r"\n*<!-- output -->\n```text\n(?P<text>.*?)^```", re.S | re.M)
TITLE = re.compile(r'title="([^"]+)"')


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str
    file: str | None  # a file block's path
    output: str | None  # the expected stdout, when the page shows it
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if SNIPPETS not in p.parents)


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found: list[Block] = []
    for match in FENCE.finditer(text):
        if match.group("lang") != "python":
            continue
        title = TITLE.search(match.group("attrs"))
        output = OUTPUT.match(text, match.end() + 1)
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start("lang")) + 1,
                code=match.group("code"),
                file=title.group(1) if title else None,
                output=output.group("text") if output else None,
                fragment="<!-- no-test -->" in match.group("before"),
            )
        )
    return found


ALL = [block for page in pages() for block in blocks(page)]
RUN = [block for block in ALL if not block.fragment]


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    for earlier in blocks(block.page):
        if earlier.line >= block.line:
            break
        if earlier.file is not None:
            path = folder / earlier.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(earlier.code)
    env = dict(os.environ, PYTHONPATH=str(folder))  # file blocks import; `troupe run` finds them
    return subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,  # a block that starts a RabbitMQ or Kafka server of its own
    )


def test_the_site_has_python_blocks() -> None:
    assert len(pages()) >= 20 and len(RUN) >= 40
    assert sum(block.output is not None for block in RUN) >= 25  # outputs are found and checked


def test_fragments_are_few_and_marked() -> None:
    fragments = [block.id for block in ALL if block.fragment]
    assert len(fragments) <= MAX_FRAGMENTS, fragments
    for page in pages():  # a python block under another name would escape the test
        assert not re.search(r"^```(py|python3|py3)\b", page.read_text(), re.M), page


@pytest.mark.parametrize("block", RUN, ids=[block.id for block in RUN])
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    done = run_block(block, tmp_path)
    assert done.returncode == 0, f"docs/{block.id} failed:\n{done.stdout}\n{done.stderr}"
    if block.output is not None:
        assert done.stdout == block.output, f"docs/{block.id} printed:\n{done.stdout}"


def test_every_page_names_the_versions_it_was_tested_with() -> None:
    missing = [str(p.relative_to(DOCS)) for p in pages() if VERSIONS_INCLUDE not in p.read_text()]
    assert not missing, f"pages without {VERSIONS_INCLUDE}: {missing}"


def test_the_versions_are_the_ones_the_tests_use() -> None:
    """The versions line names this troupe, this Python and the servers scripts/test pins."""
    text = VERSIONS.read_text()
    assert f"troupe {troupe.__version__}" in text
    assert f"Python {sys.version_info.major}.{sys.version_info.minor}" in text
    pins = (ROOT / "scripts" / "test").read_text()
    redis = re.search(r'\[redis-server\]="\d+:(\d+\.\d+\.\d+)', pins)
    rabbit = re.search(r'\[rabbitmq-server\]="(\d+\.\d+\.\d+)', pins)
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    kafka = re.search(r"<artifactId>kafka_2\.13</artifactId>\s*<version>([\d.]+)</version>", pom)
    assert redis and rabbit and kafka
    assert f"Redis {redis.group(1)}" in text
    assert f"RabbitMQ {rabbit.group(1)}" in text
    assert f"Kafka {kafka.group(1)}" in text
