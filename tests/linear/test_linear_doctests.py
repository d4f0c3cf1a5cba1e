"""The docstring examples of reglight.linear run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "reglight.linear",
    "reglight.linear._estimator",
    "reglight.linear._oracle",
    "reglight.linear._qp",
    "reglight.linear._tensor",
    "reglight.linear.path",
    "reglight.linear.models",
    "reglight.linear.logistic",
    "reglight.linear.cv",
    "reglight.linear.stability",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
