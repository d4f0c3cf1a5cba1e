"""`torch.compile` with a one-time fallback, and the one cache of compiled kernels of reglight.

The fused (opt-in) kernels of reglight are small functions that write their results into their
arguments. Each is compiled once per process, at its first call, through `shared_compiled`; if
compilation fails the caller runs its eager code instead, after one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["FallbackCompiled", "shared_compiled"]


class FallbackCompiled:
    """A `torch.compile`'d function that mutates its arguments, with the eager code as a fallback.

    Calling it runs the compiled function and returns `True`. If compiling (or running) it raises
    (no C++ compiler on a CPU machine, an unsupported platform), it warns once with the reason,
    remembers it in `failure`, and from then on returns `False` without calling it, so that the
    caller runs its eager kernels instead.

    Args:
        fn: The function to compile; it must return `None` and write its results into its arguments.
        what: What it computes, for the warning.
        dynamic: Passed to `torch.compile`.

    Examples:
        >>> import warnings
        >>> import torch
        >>> from reglight._compile import FallbackCompiled
        >>> def broken(out: torch.Tensor) -> None:  # fails as a missing compiler would
        ...     raise RuntimeError("no C++ compiler found")
        >>> kernel = FallbackCompiled(broken, "a demo kernel")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     kernel(torch.zeros(2)), kernel(torch.zeros(2))
        (False, False)
        >>> len(caught)  # warned once
        1
        >>> kernel.failure
        'RuntimeError: no C++ compiler found'
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


_SHARED: dict[Callable[..., None], FallbackCompiled] = {}
"""The compiled kernels of the process, by function: each is compiled (or fails, and warns) once."""


def shared_compiled(
    fn: Callable[..., None], what: str, dynamic: bool | None = None
) -> FallbackCompiled:
    """The process-wide `FallbackCompiled` of `fn`, created at its first request.

    Every layer that asks for the same function gets the same object, so the function is compiled once
    and a failure warns once. `torch.compile` itself is lazy: nothing is compiled before the first call.

    Args:
        fn: The kernel; it must return `None` and write its results into its arguments.
        what: What it computes, for the warning if compilation fails.
        dynamic: Passed to `torch.compile` when the kernel is created (the first request wins).

    Returns:
        The shared compiled kernel.

    Examples:
        >>> import torch
        >>> from reglight._compile import shared_compiled
        >>> def axpy(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        ...     out.copy_(2 * x + y)
        >>> shared_compiled(axpy, "a demo kernel") is shared_compiled(axpy, "a demo kernel")
        True
    """
    kernel = _SHARED.get(fn)
    if kernel is None:
        kernel = _SHARED[fn] = FallbackCompiled(fn, what, dynamic)
    return kernel
