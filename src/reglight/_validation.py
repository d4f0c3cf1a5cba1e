"""Argument checks shared by the whole library.

Every public constructor validates its arguments at construction time and raises an error that names
the argument and the value it was given (the habit of Lightning's callbacks and scikit-learn). Each
helper returns the value, converted (`float` for numbers), so a constructor checks and stores in one line:
`self.p = check_probability("p", p)`.

Examples:
    >>> check_probability("p", 0.25)
    0.25
    >>> check_probability("p", 1.0)
    Traceback (most recent call last):
        ...
    ValueError: `p` must be a probability in [0, 1), got 1.0
    >>> check_in_range("l1_ratio", 1.5, 0.0, 1.0)
    Traceback (most recent call last):
        ...
    ValueError: `l1_ratio` must be in [0.0, 1.0], got 1.5
    >>> check_choice("method", "newton", ("gradient", "proximal"))
    Traceback (most recent call last):
        ...
    ValueError: `method` must be one of 'gradient', 'proximal', got 'newton'
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "check_choice",
    "check_in_range",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_probability",
]


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_probability(name: str, value: Any, *, inclusive_one: bool = False) -> float:
    """Return `float(value)` if it lies in `[0, 1)` (or `[0, 1]`), else raise `ValueError`.

    Args:
        name: The argument's name, quoted in the error.
        value: The value given.
        inclusive_one: Accept 1 (an apply probability may be 1; a drop probability may not).

    Returns:
        The value as a float.

    Raises:
        ValueError: If `value` is not a real number in the range.
    """
    hi = "1]" if inclusive_one else "1)"
    if not _is_real(value) or math.isnan(value):
        raise ValueError(f"`{name}` must be a probability in [0, {hi}, got {value!r}")
    ok = 0.0 <= value <= 1.0 if inclusive_one else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"`{name}` must be a probability in [0, {hi}, got {value!r}")
    return float(value)


def check_in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return `float(value)` if `low <= value <= high` (bounds as given), else raise `ValueError`.

    Args:
        name: The argument's name, quoted in the error.
        value: The value given.
        low: Lower bound.
        high: Upper bound.
        low_inclusive: Whether `low` itself is allowed.
        high_inclusive: Whether `high` itself is allowed.

    Returns:
        The value as a float.

    Raises:
        ValueError: If `value` is not a real number in the range.
    """
    lb = "[" if low_inclusive else "("
    rb = "]" if high_inclusive else ")"
    if not _is_real(value) or math.isnan(value):
        raise ValueError(f"`{name}` must be a number in {lb}{low}, {high}{rb}, got {value!r}")
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        raise ValueError(f"`{name}` must be in {lb}{low}, {high}{rb}, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """Return `float(value)` if it is a finite number `>= 0`, else raise `ValueError`."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """Return `float(value)` if it is a finite number `> 0`, else raise `ValueError`."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return `value` if it is an `int >= minimum`, else raise `ValueError`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise `ValueError` listing them."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, options))}, got {value!r}")
    return str(value)
