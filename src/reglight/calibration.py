r"""Calibration of a classifier's output layer, fitted after training on held-out (validation) data.

A network trained to a low training loss is often over-confident: its softmax probabilities are more
extreme than its accuracy justifies. Rescaling the logits with one or two numbers fitted on the validation
split regularizes the output layer without retraining:

- **temperature scaling** (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
  Networks", ICML): $\hat p = \operatorname{softmax}(z / T)$ with one temperature $T > 0$ that minimizes
  the negative log-likelihood on held-out data. It never changes the predicted class ($\arg\max$), so
  multi-class accuracy is unchanged; the probabilities, and so thresholded decisions, do change.
- **Platt scaling** (Platt 1999, "Probabilistic Outputs for Support Vector Machines and Comparisons to
  Regularized Likelihood Methods"): for a binary score $s$ (a logit, or the log-odds $z_1 - z_0$ of two
  logits), $\hat p = \sigma(a s + b)$ with a slope and an intercept fitted by logistic regression. The
  intercept moves the 0.5 threshold, so it can correct a shift of the class balance seen on the
  validation split.

Each idea has a functional form ([fit_temperature][reglight.calibration.fit_temperature] /
[temperature_scale][reglight.calibration.temperature_scale], [fit_platt][reglight.calibration.fit_platt] /
[platt_scale][reglight.calibration.platt_scale]) and a module that stores the fitted numbers as buffers
([TemperatureScaling][reglight.calibration.TemperatureScaling],
[PlattScaling][reglight.calibration.PlattScaling]). Fitting runs in float64 on the CPU, is deterministic
and needs no optimizer settings. Nothing here imports Lightning.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from reglight._validation import check_choice, check_positive, check_positive_int

__all__ = [
    "CALIBRATIONS",
    "PlattScaling",
    "TemperatureScaling",
    "binary_score",
    "fit_platt",
    "fit_temperature",
    "make_calibrator",
    "platt_scale",
    "temperature_scale",
]

CALIBRATIONS: tuple[str, ...] = ("none", "temperature", "platt")
"""Calibration methods by name, as a recipe option takes them."""

PLATT_TARGETS: tuple[str, ...] = ("platt", "hard")


def _check_logits(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Validate `(logits, target)`; return them as float64 / int64 CPU tensors."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(f"`logits` must be a floating-point tensor, got {type(logits).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"`target` must be a tensor, got {type(target).__name__}")
    if logits.ndim not in (1, 2) or logits.shape[0] == 0:
        raise ValueError(
            f"`logits` must have shape (N,) (binary) or (N, K) with N >= 1, got {tuple(logits.shape)}"
        )
    if target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"`target` must have shape ({logits.shape[0]},) to match `logits` {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    z = logits.detach().to("cpu", torch.float64)
    if not torch.isfinite(z).all():
        raise ValueError("`logits` must be finite, got NaN or infinite values")
    y = target.detach().to("cpu")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError("`target` must hold class indices (integers), got fractional values")
    y = y.long()
    k = 2 if z.ndim == 1 else z.shape[1]
    if k < 2:
        raise ValueError(f"`logits` must have at least 2 classes, got shape {tuple(logits.shape)}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"`target` must lie in [0, {k - 1}] for logits of shape {tuple(logits.shape)}, got values in "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    return z, y


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"`bounds` must be a pair (low, high) of temperatures, got {bounds!r}")
    low = check_positive("bounds[0]", bounds[0])
    high = check_positive("bounds[1]", bounds[1])
    if not low < high:
        raise ValueError(f"`bounds` must satisfy low < high, got {tuple(bounds)!r}")
    return low, high


def _nll_slope(z: Tensor, y: Tensor, beta: float) -> float:
    r"""$\frac{d}{d\beta}$ of the mean NLL of $\operatorname{softmax}(\beta z)$: $\mathbb E_p[z] - z_y$, averaged."""
    if z.ndim == 1:  # binary logit: softmax over (0, z)
        return float((torch.sigmoid(beta * z) * z - y * z).mean())
    p = torch.softmax(beta * z, dim=1)
    return float(((p * z).sum(1) - z.gather(1, y[:, None])[:, 0]).mean())


def fit_temperature(
    logits: Tensor,
    target: Tensor,
    bounds: tuple[float, float] = (0.05, 20.0),
    tol: float = 1e-10,
) -> float:
    r"""The temperature $T$ that minimizes the mean negative log-likelihood of $\operatorname{softmax}(z/T)$.

    $$
    T^\star = \arg\min_{T \in [T_{lo}, T_{hi}]} \; -\frac1N \sum_{i=1}^N \log
        \operatorname{softmax}(z_i / T)_{y_i}
    $$

    (Guo et al. 2017). In $\beta = 1/T$ the objective is convex, with derivative
    $\frac1N\sum_i \big(\mathbb E_{p_i}[z_i] - z_{i,y_i}\big)$ increasing in $\beta$ (its own derivative is
    a variance), so the minimizer is the root of that derivative, found by bisection on $\log\beta$; when
    the root lies outside the bounds the nearest bound is returned (e.g. separable data want $T \to 0$).
    A 1-D `logits` of shape `(N,)` is a binary logit ($\hat p = \sigma(z/T)$) with 0/1 targets.

    Args:
        logits: Held-out logits, `(N, K)` with class indices `target` `(N,)`, or `(N,)` binary logits.
        target: Class indices `(N,)` (or `(N, 1)`).
        bounds: The range `(low, high)` searched for $T$.
        tol: Relative tolerance on $\beta$ of the bisection.

    Returns:
        The fitted temperature.

    Raises:
        TypeError: If `logits` is not a floating-point tensor.
        ValueError: For shapes that do not match, non-finite logits, targets out of range, or bad `bounds`.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
        >>> round(fit_temperature(logits, torch.tensor([0, 1, 1, 0])), 2)  # half wrong: no confidence
        20.0
        >>> t = fit_temperature(logits, torch.tensor([0, 1, 0, 0]))  # 3 of 4 right: p = 0.75 at optimum
        >>> round(torch.softmax(logits[0] / t, 0)[0].item(), 4)
        0.75
    """
    z, y = _check_logits(logits, target)
    low, high = _check_bounds(bounds)
    check_positive("tol", tol)
    lo, hi = math.log(1.0 / high), math.log(1.0 / low)  # log beta
    if _nll_slope(z, y, math.exp(lo)) >= 0:
        return high
    if _nll_slope(z, y, math.exp(hi)) <= 0:
        return low
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if _nll_slope(z, y, math.exp(mid)) > 0:
            hi = mid
        else:
            lo = mid
    return 1.0 / math.exp(0.5 * (lo + hi))


def temperature_scale(logits: Tensor, temperature: float | Tensor) -> Tensor:
    r"""Logits divided by the temperature, $z / T$ (softmax or sigmoid of them are the calibrated probabilities).

    Args:
        logits: Logits of any shape.
        temperature: $T > 0$.

    Returns:
        `logits / temperature`, same shape and dtype.

    Examples:
        >>> import torch
        >>> temperature_scale(torch.tensor([2.0, -4.0]), 2.0)
        tensor([ 1., -2.])
    """
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1 or not bool(temperature.detach().gt(0).all()):
            raise ValueError(f"`temperature` must be one positive number, got {temperature!r}")
        return logits / temperature.to(logits)
    check_positive("temperature", temperature)
    return logits / temperature


def binary_score(logits: Tensor) -> Tensor:
    r"""The binary score Platt scaling works on: the logit itself (`(N,)`) or the log-odds $z_1 - z_0$ (`(N, 2)`).

    Args:
        logits: `(N,)` binary logits or `(N, 2)` two-class logits.

    Returns:
        `(N,)` scores, the logit of the positive class.

    Examples:
        >>> import torch
        >>> binary_score(torch.tensor([[1.0, 3.0]]))
        tensor([2.])
    """
    if logits.ndim == 1:
        return logits
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(
        f"Platt scaling is binary: `logits` must have shape (N,) or (N, 2), got {tuple(logits.shape)}"
    )


def fit_platt(
    logits: Tensor,
    target: Tensor,
    targets: Literal["platt", "hard"] = "platt",
    max_iter: int = 100,
) -> tuple[float, float]:
    r"""Slope and intercept $(a, b)$ of Platt scaling, $\hat p = \sigma(a s + b)$, by logistic regression.

    With the binary score $s_i$ (see [binary_score][reglight.calibration.binary_score]) and targets $t_i$,
    $(a, b)$ minimize the cross-entropy
    $$
    -\sum_{i=1}^N t_i \log\sigma(a s_i + b) + (1 - t_i)\log\big(1 - \sigma(a s_i + b)\big).
    $$
    Platt (1999) regularizes the targets with a uniform prior on the class frequencies: $t_i =
    \frac{N_+ + 1}{N_+ + 2}$ for positives and $\frac{1}{N_- + 2}$ for negatives (`targets="platt"`, as
    scikit-learn's `CalibratedClassifierCV(method="sigmoid")`); `targets="hard"` uses the 0/1 labels (an
    unpenalized logistic regression on $s$). Solved by Newton's method with step halving (the objective is
    convex in $(a, b)$). Platt writes $1/(1 + e^{A s + B})$: his $(A, B)$ are $(-a, -b)$.

    Args:
        logits: Held-out `(N,)` binary logits or `(N, 2)` two-class logits.
        target: 0/1 labels `(N,)`.
        targets: `"platt"` (smoothed targets) or `"hard"`.
        max_iter: Newton iterations at most.

    Returns:
        `(a, b)`.

    Raises:
        ValueError: For more than two classes, mismatched shapes, non-finite logits or a bad `targets`.

    Examples:
        >>> import torch
        >>> s = torch.tensor([-2.0, -1.0, 0.5, 1.0, 2.0, 3.0])
        >>> a, b = fit_platt(s, torch.tensor([0, 0, 1, 0, 1, 1]))
        >>> a > 0
        True
    """
    check_choice("targets", targets, PLATT_TARGETS)
    check_positive_int("max_iter", max_iter)
    z, y = _check_logits(logits, target)
    s = binary_score(z)
    t = y.to(torch.float64)
    if targets == "platt":
        n_pos = float(t.sum())
        n_neg = len(t) - n_pos
        t = torch.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)).to(torch.float64)
    x = torch.stack([s, torch.ones_like(s)], dim=1)  # (N, 2) design: slope, intercept
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)

    def loss(w: Tensor) -> float:
        u = x @ w
        return float((torch.nn.functional.softplus(u) - t * u).sum())

    current = loss(w)
    for _ in range(max_iter):
        u = x @ w
        p = torch.sigmoid(u)
        grad = x.T @ (p - t)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-12 * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        lr = 1.0
        while lr > 1e-10:
            trial = w - lr * step
            value = loss(trial)
            if value <= current:
                break
            lr /= 2
        else:
            break
        w, previous, current = trial, current, value
        if previous - current <= 1e-15 * max(1.0, abs(current)) and float(grad.abs().max()) < 1e-9:
            break
    return float(w[0]), float(w[1])


def platt_scale(logits: Tensor, a: float | Tensor, b: float | Tensor) -> Tensor:
    r"""Calibrated logits of Platt scaling: $a s + b$ for `(N,)` logits, $(0,\ a s + b)$ for `(N, 2)` logits.

    For `(N, 2)` logits the result has the softmax $(1 - \hat p, \hat p)$ with $\hat p = \sigma(a s + b)$ and
    $s = z_1 - z_0$, so code that takes a softmax of two logits reads the calibrated probability.

    Args:
        logits: `(N,)` binary logits or `(N, 2)` two-class logits.
        a: Slope.
        b: Intercept.

    Returns:
        Calibrated logits, same shape as `logits`.

    Examples:
        >>> import torch
        >>> platt_scale(torch.tensor([[0.0, 1.0]]), 2.0, -1.0)
        tensor([[0., 1.]])
    """
    s = binary_score(logits)
    out = a * s + b
    if logits.ndim == 1:
        return out
    return torch.stack([torch.zeros_like(out), out], dim=1)


class TemperatureScaling(nn.Module):
    r"""Temperature scaling (Guo et al. 2017) as a module: `forward(z) = z / T`, $T$ fitted by `fit`.

    $T$ minimizes the validation negative log-likelihood (see
    [fit_temperature][reglight.calibration.fit_temperature]); it is a buffer, so it is saved in the
    `state_dict` and moves with the module. Before `fit`, $T = 1$ (the identity).

    Args:
        bounds: The range `(low, high)` searched for $T$.

    Attributes:
        temperature: The fitted $T$ (a 0-d buffer).

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
        >>> scaler = TemperatureScaling().fit(logits, torch.tensor([0, 1, 0, 0]))
        >>> scaler(logits).softmax(-1)[0].round(decimals=4)
        tensor([0.7500, 0.2500])
    """

    temperature: Tensor

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)) -> None:
        super().__init__()
        self.bounds = _check_bounds(bounds)
        self.register_buffer("temperature", torch.tensor(1.0))

    def fit(self, logits: Tensor, target: Tensor) -> TemperatureScaling:
        """Fit $T$ on held-out `logits` and class indices `target`; return `self`."""
        self.temperature.fill_(fit_temperature(logits, target, bounds=self.bounds))
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """`logits / T`."""
        return logits / self.temperature.to(logits.dtype)

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):.4g}"


class PlattScaling(nn.Module):
    r"""Platt scaling (Platt 1999) as a module: binary logits mapped to $a s + b$, $(a, b)$ fitted by `fit`.

    See [fit_platt][reglight.calibration.fit_platt] for the fit and
    [platt_scale][reglight.calibration.platt_scale] for the output (`(N,)` or `(N, 2)` logits). $a$ and $b$
    are buffers; before `fit`, $(a, b) = (1, 0)$, which leaves the probabilities unchanged.

    Args:
        targets: `"platt"` (Platt's smoothed targets, as scikit-learn) or `"hard"` (0/1 labels).

    Attributes:
        a: The fitted slope (a 0-d buffer).
        b: The fitted intercept (a 0-d buffer).

    Examples:
        >>> import torch
        >>> s = torch.tensor([-2.0, -1.0, 0.5, 1.0, 2.0, 3.0])
        >>> scaler = PlattScaling(targets="hard").fit(s, torch.tensor([0, 0, 1, 0, 1, 1]))
        >>> scaler(s).shape
        torch.Size([6])
    """

    a: Tensor
    b: Tensor

    def __init__(self, targets: Literal["platt", "hard"] = "platt") -> None:
        super().__init__()
        self.targets = check_choice("targets", targets, PLATT_TARGETS)
        self.register_buffer("a", torch.tensor(1.0))
        self.register_buffer("b", torch.tensor(0.0))

    def fit(self, logits: Tensor, target: Tensor) -> PlattScaling:
        """Fit $(a, b)$ on held-out binary `logits` and 0/1 `target`; return `self`."""
        a, b = fit_platt(logits, target, targets=self.targets)  # type: ignore[arg-type]
        self.a.fill_(a)
        self.b.fill_(b)
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """The calibrated logits (see [platt_scale][reglight.calibration.platt_scale])."""
        return platt_scale(logits, self.a.to(logits.dtype), self.b.to(logits.dtype))

    def extra_repr(self) -> str:
        return f"a={float(self.a):.4g}, b={float(self.b):.4g}, targets={self.targets!r}"


def make_calibrator(method: str) -> TemperatureScaling | PlattScaling | None:
    """The calibration module for a method name of `CALIBRATIONS` (`None` for `"none"`).

    Examples:
        >>> make_calibrator("temperature")
        TemperatureScaling(temperature=1)
    """
    check_choice("calibration", method, CALIBRATIONS)
    if method == "temperature":
        return TemperatureScaling()
    if method == "platt":
        return PlattScaling()
    return None
