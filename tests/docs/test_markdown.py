"""The Markdown of the docs and the README renders its lists as lists.

Python-Markdown (what mkdocs uses) folds a list item that directly follows a table row or a closing
code fence into the preceding block: the bullets appear as one paragraph. A blank line before the
list fixes it; this check finds the places that lack one (fenced code contents are skipped).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"])
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S")
FENCE = re.compile(r"^\s*(```|~~~)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def list_after_block(text: str) -> list[tuple[int, str]]:
    """`(line number, line)` of each list item that Python-Markdown would fold into the block above.

    That is a list item directly after a table row or a closing fence, or one less indented than the
    first line of its block when that block is an indented continuation of an earlier list item
    (a paragraph or table after a blank line inside the item).
    """
    found = []
    in_fence = False
    previous = ""  # "table", "fence_end" or ""
    block_indent: int | None = None  # indentation of the first line of the current block
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            previous = "fence_end" if in_fence else ""
            in_fence = not in_fence
            block_indent = None
            continue
        if in_fence:
            continue
        if not line.strip():
            previous, block_indent = "", None
            continue
        if block_indent is None:
            block_indent = _indent(line)
        elif LIST_ITEM.match(line) and (
            previous in ("table", "fence_end") or _indent(line) + 2 <= block_indent
        ):
            found.append((number, line.strip()))
        previous = "table" if line.lstrip().startswith("|") else ""
    return found


SAMPLES = {
    "table then list": ("| a |\n|---|\n| 1 |\n- merged\n", [(4, "- merged")]),
    "indented table in an item": (
        "- a\n\n    | x |\n    |---|\n    | 1 |\n\n    more\n- merged\n",
        [(8, "- merged")],
    ),
    "paragraph in an item": ("- a\n\n    more\n- merged\n", [(4, "- merged")]),
    "code contents": ("```\n| x |\n- code\n```\n\n- fine\n", []),
    "tight list": ("- a\n  continued\n- b\n\n    more\n\n- c\n", []),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_check_agrees_with_python_markdown(name: str) -> None:
    """The reference: Python-Markdown (mkdocs' renderer) leaves a `- ` line inside a paragraph."""
    markdown = pytest.importorskip("markdown")
    text, expected = SAMPLES[name]
    assert list_after_block(text) == expected
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    folded = [p for p in re.findall(r"<p>(.*?)</p>", html, flags=re.S) if "\n- " in p]
    assert bool(folded) == bool(expected), html


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_blank_line_precedes_lists_after_tables_and_code(path: Path) -> None:
    bad = list_after_block(path.read_text(encoding="utf-8"))
    where = "\n".join(f"{path.relative_to(ROOT)}:{n}: {line}" for n, line in bad)
    assert not bad, f"add a blank line before these list items:\n{where}"
