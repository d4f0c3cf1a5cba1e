"""Docstrings under src/reglight use one markup, the Markdown that mkdocstrings renders.

Sphinx roles (:class:`X`, :func:`f`, :math:`x`, ...) and directives (.. math::, .. note::) are not
Markdown: the documentation site would print them as they are. Write `code`, $math$ / $$math$$ and
[name][reglight.module.Name] instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "reglight"

# :class:`X`, :func:`~a.b`, :py:meth:`x`, ... (a role is a word between colons right before a backtick)
ROLE = re.compile(r"(?<![\w:`]):(?:[a-z]+:)?[a-z]+:`")
# .. math::, .. note::, .. code-block:: python (a directive starts a line)
DIRECTIVE = re.compile(r"^\s*\.\. [a-z][\w-]*::", re.MULTILINE)


def string_statements(tree: ast.AST) -> list[ast.Constant]:
    """Every string literal that stands as a statement: module, class, function and attribute docstrings."""
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]


def sphinx_markup(text: str) -> list[tuple[int, str]]:
    """`(line offset, matched text)` of each Sphinx role or directive in `text`."""
    found = []
    for pattern in (ROLE, DIRECTIVE):
        for m in pattern.finditer(text):
            found.append((text.count("\n", 0, m.start()), m.group(0).strip()))
    return sorted(found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("See :class:`Foo` and :func:`~a.bar`.", [":class:`", ":func:`"]),
        ("Uses :py:meth:`x` here.", [":py:meth:`"]),
        ("Math :math:`x^2`.", [":math:`"]),
        ("Text.\n\n    .. math:: x^2\n", [".. math::"]),
        ("Text.\n\n.. note::\n    careful\n", [".. note::"]),
        # Markdown is fine: code spans, math, cross references, a time of day, a dict in code
        ("Use `Foo`, $x^2$ and [Foo][reglight.Foo] at 10:30.", []),
        ('Call `f(a={"k": 1})` or see `reglight.nn:Dropout`.', []),
    ],
)
def test_detector_finds_sphinx_markup_and_nothing_else(text: str, expected: list[str]) -> None:
    assert [found for _, found in sphinx_markup(text)] == expected


def test_no_sphinx_markup_in_docstrings() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert files, f"no Python files under {SRC}"
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in string_statements(tree):
            for offset, found in sphinx_markup(node.value):
                offenders.append((str(path.relative_to(SRC.parent)), node.lineno + offset, found))
    assert not offenders, (
        f"{len(offenders)} Sphinx roles/directives in docstrings (use Markdown: `code`, $math$, "
        "[name][reglight.module.Name]):\n"
        + "\n".join(f"{file}:{line}: {found}" for file, line, found in sorted(offenders))
    )
