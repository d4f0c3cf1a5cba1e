"""``torch.compile`` with a one-time fallback: the fused (opt-in) kernels of reglight use it."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["FallbackCompiled"]


class FallbackCompiled:
    """A ``torch.compile``'d function that mutates its arguments, with the eager code as a fallback.

    Calling it runs the compiled function and returns ``True``. If compiling (or running) it raises —
    no C++ compiler on a CPU machine, an unsupported platform — it warns once with the reason,
    remembers it in `failure`, and from then on returns ``False`` without calling it, so that the
    caller runs its eager kernels instead.

    Args:
        fn: the function to compile; it must return ``None`` and write its results into its arguments.
        what: what it computes, for the warning.
        dynamic: passed to ``torch.compile``.
    """

    def __init__(self, fn: Callable[..., None], what: str, dynamic: bool | None = None) -> None:
        self._fn: Callable[..., Any] = torch.compile(fn, dynamic=dynamic)
        self.what = what
        self.failure: str | None = None

    def __call__(self, *args: Any) -> bool:
        if self.failure is not None:
            return False
        try:
            self._fn(*args)
        except Exception as err:  # compilation failed: no compiler, unsupported platform, ...
            self.failure = f"{type(err).__name__}: {err}".splitlines()[0]
            warnings.warn(
                f"reglight: {self.what} could not be compiled ({self.failure}); "
                "using the eager kernels",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        return True
