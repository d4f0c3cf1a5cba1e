"""The docstring examples of reglight.penalties run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "reglight.penalties.base",
    "reglight.penalties.elementwise",
    "reglight.penalties.functional",
    "reglight.penalties.fused",
    "reglight.penalties.group",
    "reglight.penalties.loss",
    "reglight.penalties.selection",
    "reglight.penalties.steps",
    "reglight.callbacks.penalty",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0
