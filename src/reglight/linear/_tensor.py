"""Conversion at the public boundary: arrays or tensors in, tensors inside, the input's kind out.

Every public function and estimator of `reglight.linear` converts its inputs once, with the helpers
below, and hands tensors to the private solvers; results go back as NumPy arrays unless the input
was a tensor (`like_input`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_grid",
    "as_matrix",
    "as_vector",
    "like_input",
    "resolve_dtype",
]

ArrayLike = Any  # NumPy array, torch tensor, or a nested sequence of numbers


def resolve_dtype(X: ArrayLike, dtype: torch.dtype | None) -> torch.dtype:
    """The floating dtype the solvers compute in.

    `dtype` if given, else the input's own float dtype (float32 stays float32, like
    scikit-learn), else float64.

    Raises:
        TypeError: If `dtype` is not a floating dtype.

    Examples:
        >>> import numpy as np
        >>> resolve_dtype(np.zeros(2, dtype=np.float32), None), resolve_dtype([1, 2], None)
        (torch.float32, torch.float64)
    """
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a floating torch dtype, got {dtype!r}")
        return dtype
    if isinstance(X, torch.Tensor) and X.dtype in (torch.float32, torch.float64):
        return X.dtype
    if isinstance(X, np.ndarray) and X.dtype == np.float32:
        return torch.float32
    return torch.float64


def as_matrix(
    name: str, X: ArrayLike, dtype: torch.dtype, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return `X` as a finite, non-empty 2-D floating tensor (no copy when it already is one).

    Raises:
        ValueError: For another shape, an empty matrix or a NaN / infinite entry.
        TypeError: For non-numeric or complex input.

    Examples:
        >>> as_matrix("X", [[1, 2], [3, 4]], torch.float64).dtype
        torch.float64
    """
    t = _to_tensor(name, X, dtype, device)
    if t.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {tuple(t.shape)}")
    _check_finite(name, t)
    return t


def _check_finite(name: str, t: torch.Tensor) -> None:
    # A sum is NaN/inf whenever an entry is, and costs no n x p boolean temporary.
    if not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values")


def as_vector(
    name: str,
    y: ArrayLike,
    n: int,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Return `y` as a finite 1-D floating tensor of length `n` (a column (n, 1) is flattened).

    Raises:
        ValueError: For another shape or a NaN / infinite entry.

    Examples:
        >>> as_vector("y", [[1.0], [2.0]], 2, torch.float64).shape
        torch.Size([2])
    """
    t = _to_tensor(name, y, dtype, device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},), got {tuple(t.shape)}")
    _check_finite(name, t)
    return t


def as_grid(alphas: ArrayLike, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Return an explicit grid of `α` as a decreasing tensor.

    Raises:
        ValueError: If `alphas` is empty or holds a negative or non-finite value.

    Examples:
        >>> as_grid([0.1, 1.0], torch.float64, torch.device("cpu"))
        tensor([1.0000, 0.1000], dtype=torch.float64)
    """
    if isinstance(alphas, torch.Tensor):
        grid = alphas.detach().to(device=device, dtype=dtype).reshape(-1)
    else:
        grid = torch.as_tensor(np.asarray(alphas, dtype=np.float64).ravel(), dtype=dtype)
    if grid.numel() == 0 or not bool(torch.isfinite(grid).all()) or bool((grid < 0).any()):
        raise ValueError(
            f"`alphas` must be a non-empty sequence of finite numbers >= 0, got {alphas!r}"
        )
    return grid.sort(descending=True).values.to(device)


def _to_tensor(
    name: str, a: ArrayLike, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as err:  # pragma: no cover - numpy's own message is clear
            raise TypeError(
                f"`{name}` must be an array or a tensor, got {type(a).__name__}"
            ) from err
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must be numeric, got an array of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"`{name}` must be real-valued, got dtype {t.dtype}")
    return t.to(device=device if device is not None else t.device, dtype=dtype)


def like_input(reference: ArrayLike, t: torch.Tensor) -> Any:
    """Return `t` as a NumPy array when `reference` is not a tensor, else as the tensor.

    Examples:
        >>> like_input([1.0], torch.ones(2))
        array([1., 1.], dtype=float32)
    """
    if isinstance(reference, torch.Tensor):
        return t
    return t.detach().cpu().numpy()
