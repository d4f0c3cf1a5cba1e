"""A strictly scoped intra-op thread count for the lasso recipe's own computations.

torch's thread count is process-wide. On small tables one thread is faster than several (a step's
arithmetic costs less than synchronizing threads), but a model must not change a setting the rest
of the program relies on. [`torch_threads`][reglight.recipes.lasso.threads.torch_threads] sets it
for one block and restores it on exit, also when the block raises; switching costs well under a
microsecond.

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import torch

from reglight._validation import check_positive_int

__all__ = ["torch_threads", "with_model_threads"]

_Method = TypeVar("_Method", bound=Callable[..., Any])


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with `num_threads` intra-op threads, then restore the previous count.

    Args:
        num_threads: threads inside the block; `None` leaves the count alone.

    Raises:
        ValueError: if `num_threads` is not a positive integer.
    """
    if num_threads is None:
        yield
        return
    check_positive_int("num_threads", num_threads)
    previous = torch.get_num_threads()
    if previous == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def with_model_threads(method: _Method) -> _Method:
    """Decorate a model method to run under `torch_threads(self.hparams["num_threads"])`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(self.hparams.get("num_threads")):
            return method(self, *args, **kwargs)

    return cast(_Method, wrapper)
