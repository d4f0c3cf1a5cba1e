"""What the scikit-learn estimators of `reglight.linear` share: input checks at `fit` / `predict`.

Two kinds of input, one rule: the output of a call is of the kind of its `X`.

* NumPy arrays, lists, data frames go through scikit-learn's `validate_data` (its error messages,
  `n_features_in_`, `feature_names_in_`); float32 stays float32, everything else becomes float64.
  Fitted attributes are NumPy arrays, even when the computation ran on a GPU (`device="cuda"`).
* torch tensors are checked here with the same rules (2-D, finite, `n_features_in_`) and stay on
  their device; fitted attributes are tensors and `predict` returns tensors.

Examples:
    >>> import numpy as np
    >>> from reglight.linear import Lasso
    >>> model = Lasso(alpha=0.1)
    >>> Xt, yt = regression_inputs(model, [[0, 1], [1, 0], [2, 2]], [1, 2, 3], None, None)
    >>> Xt.dtype, model.n_features_in_
    (torch.float64, 2)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._tensor import as_matrix, as_vector, resolve_dtype

__all__ = [
    "classification_inputs",
    "coef_tensor",
    "fitted_dtype",
    "predict_input",
    "regression_inputs",
    "to_host",
]

_FLOATS = [np.float64, np.float32]


def _device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"`device` must be a torch device or None, got {device!r}") from err


def _from_numpy(X: np.ndarray, dtype: torch.dtype | None, device: Any) -> torch.Tensor:
    dt = resolve_dtype(X, dtype)
    with warnings.catch_warnings():  # read-only arrays: the solvers never write to X
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(np.ascontiguousarray(X))
    return t.to(device=_device(device) or t.device, dtype=dt)


def _check_tensor_features(est: Any, Xt: torch.Tensor, reset: bool) -> None:
    if reset:
        est.n_features_in_ = int(Xt.shape[1])
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif Xt.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {Xt.shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )


def regression_inputs(
    est: Any, X: Any, y: Any, dtype: torch.dtype | None, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate `(X, y)` for a regressor's `fit`, set `n_features_in_`, return float tensors."""
    if isinstance(X, torch.Tensor):
        Xt = as_matrix("X", X, resolve_dtype(X, dtype), _device(device))
        if y is None:
            raise ValueError(
                f"{type(est).__name__} requires y to be passed, but the target y is None"
            )
        yt = as_vector("y", y, Xt.shape[0], Xt.dtype, Xt.device)
        _check_tensor_features(est, Xt, reset=True)
        return Xt, yt
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    Xv, yv = validate_data(est, X, y, dtype=_FLOATS, y_numeric=True)
    Xt = _from_numpy(Xv, dtype, device)
    return Xt, torch.from_numpy(np.asarray(yv, dtype=np.float64)).to(Xt.device, Xt.dtype)


def classification_inputs(
    est: Any, X: Any, y: Any, dtype: torch.dtype | None, device: Any
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Validate `(X, y)` for a classifier's `fit`: `(X tensor, classes, codes)`.

    Raises:
        ValueError: For a continuous target or fewer than two classes.
    """
    if isinstance(X, torch.Tensor):
        Xt = as_matrix("X", X, resolve_dtype(X, dtype), _device(device))
        if y is None:
            raise ValueError(
                f"{type(est).__name__} requires y to be passed, but the target y is None"
            )
        yn = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        yn = column_or_1d(yn, warn=True)
        if yn.shape[0] != Xt.shape[0]:
            raise ValueError(f"`y` must have shape ({Xt.shape[0]},), got {yn.shape}")
        _check_tensor_features(est, Xt, reset=True)
    else:
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().numpy()
        Xv, yn = validate_data(est, X, y, dtype=_FLOATS)
        Xt = _from_numpy(Xv, dtype, device)
    check_classification_targets(yn)
    classes, codes = np.unique(yn, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(
            f"{type(est).__name__} needs at least two classes in `y`, got one class: "
            f"{classes.tolist()}"
        )
    return Xt, classes, codes


def predict_input(est: Any, X: Any, dtype: torch.dtype) -> torch.Tensor:
    """Check that `est` is fitted and that `X` matches it; return `X` as a tensor of `dtype`.

    A tensor stays on its device; NumPy-like input becomes a CPU tensor.
    """
    check_is_fitted(est)
    if isinstance(X, torch.Tensor):
        Xt = as_matrix("X", X, dtype)
        _check_tensor_features(est, Xt, reset=False)
        return Xt
    Xv = validate_data(est, X, reset=False, dtype=_FLOATS)
    return _from_numpy(Xv, dtype, None)


def coef_tensor(a: Any, Xt: torch.Tensor) -> torch.Tensor:
    """A fitted array or tensor on the device of `Xt`, in its dtype."""
    return torch.as_tensor(a).to(device=Xt.device, dtype=Xt.dtype)


def fitted_dtype(coef: Any) -> torch.dtype:
    """The torch dtype of a fitted coefficient array or tensor."""
    return coef.dtype if isinstance(coef, torch.Tensor) else resolve_dtype(coef, None)


def to_host(a: Any) -> Any:
    """A tensor as a NumPy array (for scikit-learn's metrics in `score`), anything else as is."""
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
