"""Griffe extension for the API reference: read troupe's reST-flavoured docstrings as Markdown.

The docstrings are written for ``help()`` and doctest: Sphinx roles
(``:class:`~troupe.Backoff```) and ``>>>`` examples. In the site a role becomes
inline code (the name, without the path when it starts with ``~``) and a run of
doctest lines becomes a ``pycon`` code block, so a reply such as ``[0.1, 0.2]`` is
not read as a Markdown link. Used by mkdocs.yml (python handler ``extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`~?([^`]+)`")


def _role(found: re.Match[str]) -> str:
    target = found.group(1)
    shown = target.rsplit(".", 1)[-1] if found.group(0).split("`", 1)[1].startswith("~") else target
    return f"`{shown}`"


def markdown(text: str) -> str:
    """The docstring ``text`` with roles as code and doctest runs fenced."""
    text = ROLE.sub(_role, text)
    out: list[str] = []
    in_doctest = False
    indent = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not in_doctest and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_doctest = True
        elif in_doctest and not stripped:
            out.append(f"{indent}```")
            in_doctest = False
        out.append(line)
    if in_doctest:
        out.append(f"{indent}```")
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite each loaded object's docstring (see the module docstring)."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
