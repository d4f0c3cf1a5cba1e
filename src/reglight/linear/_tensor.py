"""Input conversion shared by the solvers: NumPy arrays or tensors in, the same kind out."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["as_matrix", "as_vector", "like_input", "resolve_dtype", "single_thread"]

ArrayLike = Any  # NumPy array, torch tensor, or a nested sequence of numbers


def resolve_dtype(X: ArrayLike, dtype: torch.dtype | None) -> torch.dtype:
    """The floating dtype the solvers compute in: ``dtype`` if given, else the input's own float
    dtype (float32 stays float32, like scikit-learn), else float64."""
    if dtype is not None:
        if not dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a floating dtype, got {dtype!r}")
        return dtype
    if isinstance(X, torch.Tensor) and X.dtype in (torch.float32, torch.float64):
        return X.dtype
    if isinstance(X, np.ndarray) and X.dtype == np.float32:
        return torch.float32
    return torch.float64


def as_matrix(
    name: str, X: ArrayLike, dtype: torch.dtype, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return ``X`` as a 2-D floating tensor (no copy when it already is one of ``dtype``)."""
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
    """Return ``y`` as a 1-D floating tensor of length ``n``."""
    t = _to_tensor(name, y, dtype, device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},), got {tuple(t.shape)}")
    _check_finite(name, t)
    return t


def _to_tensor(
    name: str, a: ArrayLike, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a
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
    """Return ``t`` as a NumPy array when ``reference`` is not a tensor, else as the tensor."""
    if isinstance(reference, torch.Tensor):
        return t
    return t.detach().cpu().numpy()


@contextmanager
def single_thread(device: torch.device) -> Iterator[None]:
    """Run the enclosed CPU work with one intra-op thread, then restore the previous count.

    The active-set solvers make many small LAPACK calls (Cholesky of the active block); with
    several threads on a busy CPU, MKL's threaded ``potrf`` can take milliseconds for a 10 x 10
    matrix (thread wake-ups), a thousand times its single-thread cost. Large products (Gram
    matrix, ``Xᵀr``) are done outside this context.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
