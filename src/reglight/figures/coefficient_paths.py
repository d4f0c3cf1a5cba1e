r"""Gallery figure 3: lasso, ridge and elastic-net coefficient paths on scikit-learn's diabetes data.

The ten standardized features of the diabetes data set (442 patients, disease progression after one
year) are fitted along a decreasing grid of $\alpha$: the lasso and the elastic net by
[lasso_path][reglight.linear.lasso_path] and [enet_path][reglight.linear.enet_path], ridge in closed form
(the same objective at `l1_ratio = 0`). The $\alpha$ of each is chosen by 5-fold cross-validation on the
same shuffled folds: [enet_cv][reglight.linear.enet_cv] for the lasso and the elastic net, the same
held-out mean squared error and [select_alpha][reglight.linear.select_alpha] for ridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reglight.figures._base import GalleryFigure, register
from reglight.figures._ridge import ridge
from reglight.figures._style import new_figure
from reglight.linear import enet_cv, enet_path, kfold_indices, lasso_path, select_alpha

__all__ = ["PenaltyPath", "coefficient_paths", "diabetes", "make_coefficient_paths"]

ENET_RATIO = 0.5
"""`l1_ratio` of the elastic-net path."""


@dataclass
class PenaltyPath:
    """One penalty's path and its cross-validated choice.

    Attributes:
        label: Penalty name.
        alphas: Decreasing grid of `α`.
        coefs: Coefficients along the grid, (n_features, n_alphas).
        alpha_cv: The `α` of the minimum cross-validated error.
        cv_mse: That minimum mean held-out squared error.
        coef_cv: Coefficients at `alpha_cv` (on the whole data).
    """

    label: str
    alphas: np.ndarray
    coefs: np.ndarray
    alpha_cv: float
    cv_mse: float
    coef_cv: np.ndarray


def diabetes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's diabetes data: standardized features, centred target, feature names."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    X = np.asarray(data.data, dtype=np.float64)
    X = (X - X.mean(0)) / X.std(0)
    y = np.asarray(data.target, dtype=np.float64)
    return X, y - y.mean(), list(data.feature_names)


def _ridge_cv(
    X: np.ndarray, y: np.ndarray, alphas: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[float, float]:
    errors = np.empty((len(folds), len(alphas)))
    for k, (train, test) in enumerate(folds):
        Xtr, ytr = torch.as_tensor(X[train]), torch.as_tensor(y[train])
        for j, alpha in enumerate(alphas):
            w, b = ridge(Xtr, ytr, float(alpha))
            errors[k, j] = float(np.mean((X[test] @ w.numpy() + float(b) - y[test]) ** 2))
    mean = errors.mean(0)
    se = errors.std(0, ddof=1) / np.sqrt(len(folds))
    i, alpha = select_alpha(alphas, mean, se, "min")
    return alpha, float(mean[i])


def coefficient_paths(n_alphas: int = 100, seed: int = 0) -> tuple[list[PenaltyPath], list[str]]:
    """The three paths on the diabetes data, each with its cross-validated `α`.

    Args:
        n_alphas: Grid size of each path and of each cross-validation.
        seed: Seed of the fold permutation.

    Returns:
        The lasso, ridge and elastic-net paths, and the feature names.
    """
    X, y, names = diabetes()
    folds = kfold_indices(len(y), 5, shuffle=True, seed=seed)
    paths = []
    for label, rho in (("lasso", 1.0), (f"elastic net (l1_ratio={ENET_RATIO})", ENET_RATIO)):
        if rho == 1.0:
            alphas, coefs = lasso_path(X, y, n_alphas=n_alphas, eps=1e-4)
        else:
            alphas, coefs = enet_path(X, y, l1_ratio=rho, n_alphas=n_alphas, eps=1e-4)
        cv = enet_cv(X, y, l1_ratio=rho, alphas=alphas, cv=folds)
        i = int(np.argmin(np.abs(alphas - cv.alpha_min)))
        paths.append(
            PenaltyPath(label, alphas, coefs, cv.alpha_min, float(cv.mean.min()), coefs[:, i])
        )
    grid = np.logspace(3, -3, n_alphas)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    coefs = np.stack([ridge(Xt, yt, float(a))[0].numpy() for a in grid], axis=1)
    alpha, mse = _ridge_cv(X, y, grid, folds)
    i = int(np.argmin(np.abs(grid - alpha)))
    paths.insert(1, PenaltyPath("ridge", grid, coefs, alpha, mse, coefs[:, i]))
    return paths, names


@register("coefficient_paths", 3)
def make_coefficient_paths(quick: bool, seed: int) -> GalleryFigure:
    """Gallery maker of figure 3."""
    paths, names = coefficient_paths(40 if quick else 100, seed)
    fig = new_figure(13.0, 4.2)
    axes = fig.subplots(1, 3)
    cmap = _palette(len(names))
    numbers: dict[str, float] = {}
    for ax, path in zip(axes, paths, strict=True):
        for j, name in enumerate(names):
            ax.plot(path.alphas, path.coefs[j], color=cmap[j], lw=1.4, label=name)
        ax.axvline(path.alpha_cv, color="k", ls="--", lw=1)
        kept = int(np.count_nonzero(path.coef_cv))
        ax.text(
            path.alpha_cv,
            0.98,
            f" CV α = {path.alpha_cv:.3g}\n {kept} of {len(names)} kept\n CV MSE {path.cv_mse:.0f}",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
        )
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xlabel("α (decreasing →)")
        ax.set_title(path.label, fontsize=10)
        key = path.label.split(" ")[0]
        key = "enet" if key == "elastic" else key
        numbers[f"{key}_alpha_cv"] = path.alpha_cv
        numbers[f"{key}_cv_mse"] = path.cv_mse
        numbers[f"{key}_n_kept"] = float(kept)
    axes[0].set_ylabel("coefficient (standardized features)")
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    lasso, ridge_path, enet = paths
    dropped = [names[j] for j in np.flatnonzero(lasso.coef_cv == 0)]
    caption = (
        f"Coefficient paths on scikit-learn's diabetes data (442 patients, 10 standardized features) "
        f"computed by `reglight.linear.lasso_path` and `enet_path` (l1_ratio {ENET_RATIO}) and by ridge in "
        f"closed form, over {len(lasso.alphas)} values of α each; dashed: the α of minimum 5-fold "
        f"cross-validated error (`enet_cv` on shuffled `kfold_indices`, the same folds for ridge). The "
        f"lasso keeps {int(numbers['lasso_n_kept'])} features at α = {lasso.alpha_cv:.3g} (dropped: "
        f"{', '.join(dropped) or 'none'}; CV MSE {lasso.cv_mse:.0f}); ridge keeps all ten and only "
        f"shrinks them (α = {ridge_path.alpha_cv:.3g}, CV MSE {ridge_path.cv_mse:.0f}); the elastic net "
        f"keeps {int(numbers['enet_n_kept'])} (α = {enet.alpha_cv:.3g}, CV MSE {enet.cv_mse:.0f})."
    )
    return GalleryFigure(
        "coefficient_paths", "Lasso, ridge and elastic-net paths", fig, caption, numbers
    )


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]
