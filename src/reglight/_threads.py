"""One scoped torch intra-op thread count, for the solvers and models that take `n_threads`.

torch's thread count is process-wide. On small problems one thread is faster than several (an
iteration's arithmetic costs less than synchronizing threads, and much less on a busy CPU), but library
code must not change a setting the rest of the program relies on. `torch_threads`
sets the count for one block and restores it on exit, also when the block raises.

Examples:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["check_n_threads", "torch_threads"]


def check_n_threads(n_threads: Any) -> int | None:
    """Return `n_threads` if it is `None` or an integer >= 1, else raise `ValueError`.

    Examples:
        >>> check_n_threads(0)
        Traceback (most recent call last):
        ...
        ValueError: `n_threads` must be None or an integer >= 1, got 0
    """
    if n_threads is None:
        return None
    if not isinstance(n_threads, int) or isinstance(n_threads, bool) or n_threads < 1:
        raise ValueError(f"`n_threads` must be None or an integer >= 1, got {n_threads!r}")
    return n_threads


@contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with `n_threads` torch intra-op threads, then restore the previous count.

    `None` leaves torch's setting alone. While the block runs the setting is seen by the whole
    process (`torch.set_num_threads` is process-wide).

    Args:
        n_threads: threads inside the block, or `None`.

    Raises:
        ValueError: if `n_threads` is neither `None` nor a positive integer.
    """
    n = check_n_threads(n_threads)
    previous = torch.get_num_threads()
    if n is None or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
