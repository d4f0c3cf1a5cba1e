"""Run a lasso-model method under the model's own `n_threads` (see `torch_threads`).

Examples:
    >>> import torch
    >>> class Model:
    ...     hparams = {"n_threads": 1}
    ...     @with_model_threads
    ...     def step(self):
    ...         return torch.get_num_threads()
    >>> before = torch.get_num_threads()
    >>> Model().step(), torch.get_num_threads() == before
    (1, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from reglight._threads import torch_threads

__all__ = ["with_model_threads"]

_Method = TypeVar("_Method", bound=Callable[..., Any])


def with_model_threads(method: _Method) -> _Method:
    """Decorate a model method to run under `torch_threads(self.hparams["n_threads"])`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(self.hparams.get("n_threads")):
            return method(self, *args, **kwargs)

    return cast(_Method, wrapper)
