"""Fixtures of the compatibility tests (the shared setup of `tests/conftest.py` applies here too)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from compat_models import LIGHTNING_ES_LOGGER


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def es_messages() -> Iterator[list[str]]:
    """The messages logged through Lightning's early-stopping logger during the test.

    A handler on the logger itself: Lightning's package logger does not always propagate to the root one.
    """
    logger = logging.getLogger(LIGHTNING_ES_LOGGER)
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
