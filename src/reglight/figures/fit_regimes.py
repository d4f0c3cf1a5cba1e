r"""Gallery figure 1: underfitting, a good fit, overfitting, and ridge fixing the overfit.

Noisy samples of $\sin(2\pi x)$ are fitted by least squares on polynomial features of degree 1 (a line),
a low degree and a high degree, and by ridge on the high-degree features at the $\alpha$ chosen by 5-fold
cross-validation. Every fit is ridge in closed form (minimum-norm least squares when $\alpha = 0$, an
unpenalized intercept) on standardized features, in the objective scaling of
[elastic_net][reglight.linear.elastic_net]; the folds are [kfold_indices][reglight.linear.kfold_indices] and the rule is
[select_alpha][reglight.linear.select_alpha].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reglight.figures._base import GalleryFigure, register
from reglight.figures._ridge import ridge
from reglight.figures._style import COLORS, new_figure
from reglight.linear import kfold_indices, select_alpha

__all__ = ["FitRegimes", "fit_regimes", "make_fit_regimes"]

NOISE = 0.3
"""Standard deviation of the noise added to $\\sin(2\\pi x)$."""


@dataclass
class PolyFit:
    """One polynomial model: its degree, ridge `alpha` (0: least squares), errors and curve."""

    label: str
    degree: int
    alpha: float
    train_mse: float
    test_mse: float
    curve: np.ndarray


@dataclass
class FitRegimes:
    """The data and the four fits of the figure.

    Attributes:
        x_train: Training inputs in [0, 1].
        y_train: Noisy training targets.
        x_test: Held-out inputs.
        y_test: Held-out targets.
        grid: Inputs where the curves are drawn.
        fits: Underfit, good fit, overfit and ridge (in that order).
        cv_alphas: The ridge grid searched by cross-validation.
        cv_mse: Mean held-out error per grid point.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    grid: np.ndarray
    fits: list[PolyFit]
    cv_alphas: np.ndarray
    cv_mse: np.ndarray


def _features(x: np.ndarray, degree: int) -> torch.Tensor:
    """Powers $t, t^2, \\dots, t^d$ of $t = 2x - 1$ (the intercept is fitted separately)."""
    t = 2.0 * np.asarray(x, dtype=np.float64) - 1.0
    return torch.as_tensor(np.stack([t**k for k in range(1, degree + 1)], axis=1))


class _Poly:
    """Polynomial regression on standardized power features (the scaling of the training set)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, degree: int, alpha: float) -> None:
        z = _features(x, degree)
        self.degree = degree
        self.mean, self.std = z.mean(0), z.std(0)
        self.w, self.b = ridge((z - self.mean) / self.std, torch.as_tensor(y), alpha)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (_features(x, self.degree) - self.mean) / self.std
        return (z @ self.w + self.b).numpy()


def _mse(model: _Poly, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((model(x) - y) ** 2))


def fit_regimes(
    seed: int = 0,
    n_train: int = 20,
    n_test: int = 500,
    degrees: tuple[int, int, int] = (1, 4, 15),
    n_alphas: int = 30,
) -> FitRegimes:
    """Sample the data and fit the underfit, good, overfit and cross-validated ridge models.

    Args:
        seed: Seed of the noise, of the held-out inputs and of the fold permutation.
        n_train: Number of training samples (at evenly spaced inputs, ends included).
        n_test: Number of held-out samples.
        degrees: Degrees of the underfit, good and overfit polynomials.
        n_alphas: Size of the log grid of ridge `alpha` values (from 10 down to 1e-8).

    Returns:
        The data, the four fits with their train and test mean squared errors, and the CV curve.
    """
    rng = np.random.default_rng(seed)

    def noisy(x: np.ndarray) -> np.ndarray:
        return np.sin(2 * np.pi * x) + NOISE * rng.standard_normal(len(x))

    x_train = np.linspace(0.0, 1.0, n_train)
    y_train = noisy(x_train)
    x_test = np.sort(rng.uniform(0.0, 1.0, n_test))
    y_test = noisy(x_test)
    grid = np.linspace(0.0, 1.0, 400)
    fits = []
    for label, degree in zip(("underfit", "good fit", "overfit"), degrees, strict=True):
        model = _Poly(x_train, y_train, degree, 0.0)
        fits.append(
            PolyFit(
                f"{label}: degree {degree}",
                degree,
                0.0,
                _mse(model, x_train, y_train),
                _mse(model, x_test, y_test),
                model(grid),
            )
        )
    high = degrees[2]
    alphas = np.logspace(1, -8, n_alphas)
    folds = kfold_indices(n_train, 5, shuffle=True, seed=seed)
    errors = np.array(
        [
            [
                _mse(_Poly(x_train[tr], y_train[tr], high, a), x_train[te], y_train[te])
                for a in alphas
            ]
            for tr, te in folds
        ]
    )
    mean = errors.mean(0)
    se = errors.std(0, ddof=1) / np.sqrt(len(folds))
    _, alpha = select_alpha(alphas, mean, se, "min")
    tuned = _Poly(x_train, y_train, high, alpha)
    fits.append(
        PolyFit(
            f"ridge: degree {high}, α={alpha:.2g} (CV)",
            high,
            alpha,
            _mse(tuned, x_train, y_train),
            _mse(tuned, x_test, y_test),
            tuned(grid),
        )
    )
    return FitRegimes(x_train, y_train, x_test, y_test, grid, fits, alphas, mean)


@register("fit_regimes", 1)
def make_fit_regimes(quick: bool, seed: int) -> GalleryFigure:
    """Gallery maker of figure 1 (the same computation in quick mode: it takes well under a second)."""
    data = fit_regimes(seed, n_alphas=20 if quick else 40)
    fig = new_figure(12.0, 3.6)
    axes = fig.subplots(1, 4, sharey=True)
    colors = [COLORS["under"], COLORS["good"], COLORS["over"], COLORS["ridge"]]
    truth = np.sin(2 * np.pi * data.grid)
    for ax, fit, color in zip(axes, data.fits, colors, strict=True):
        ax.plot(data.grid, truth, color="0.6", lw=1, ls="--", label="sin(2πx)")
        ax.scatter(data.x_train, data.y_train, s=14, color=COLORS["data"], zorder=3, label="train")
        ax.plot(
            data.grid,
            fit.curve,
            color=color,
            lw=2,
            label=f"train MSE {fit.train_mse:.3f}\ntest MSE {fit.test_mse:.3f}",
        )
        ax.set_title(fit.label, fontsize=10)
        ax.set_ylim(-2.0, 2.0)
        ax.set_xlabel("x")
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("y")
    under, good, over, tuned = data.fits
    numbers = {
        "n_train": float(len(data.x_train)),
        "noise_std": NOISE,
        "ridge_alpha": tuned.alpha,
    }
    for key, fit in zip(("underfit", "good", "overfit", "ridge"), data.fits, strict=True):
        numbers[f"{key}_degree"] = float(fit.degree)
        numbers[f"{key}_train_mse"] = fit.train_mse
        numbers[f"{key}_test_mse"] = fit.test_mse
    caption = (
        f"{len(data.x_train)} noisy samples of sin(2πx) (noise σ = {NOISE}) fitted by least squares on "
        f"polynomial features of degree {under.degree}, {good.degree} and {over.degree}, and by ridge on "
        f"the degree-{over.degree} features with α = {tuned.alpha:.3g} chosen by 5-fold cross-validation "
        f"(`kfold_indices`, `select_alpha`; closed-form fits). Mean squared error on the "
        f"training set / on {len(data.x_test)} held-out samples: the line underfits "
        f"({under.train_mse:.3f} / {under.test_mse:.3f}); degree {good.degree} fits "
        f"({good.train_mse:.3f} / {good.test_mse:.3f}); degree {over.degree} overfits, with the lowest "
        f"training error and a high test error ({over.train_mse:.3f} / {over.test_mse:.3f}); ridge on the "
        f"same degree-{over.degree} model brings the test error back to {tuned.test_mse:.3f} "
        f"(train {tuned.train_mse:.3f})."
    )
    return GalleryFigure(
        "fit_regimes", "Underfitting, overfitting and ridge", fig, caption, numbers
    )
