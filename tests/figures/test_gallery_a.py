"""The gallery's figures 1, 2, 3, 4 and 7, their numbers against references, and the writer."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso as SkLasso
from sklearn.linear_model import LassoCV, Ridge
from sklearn.linear_model import lasso_path as sk_lasso_path

from reglight.cli import main
from reglight.figures import figure_names, write_figures
from reglight.figures._ridge import ridge
from reglight.figures.coefficient_paths import coefficient_paths, diabetes
from reglight.figures.constraint_geometry import ENET_RATIO, constraint_geometry
from reglight.figures.dropout_ensemble import dropout_ensemble
from reglight.figures.fit_regimes import fit_regimes
from reglight.figures.norm_axes import norm_axes

OURS = ("fit_regimes", "constraint_geometry", "coefficient_paths", "dropout_ensemble", "norm_axes")


def test_registry_has_our_figures_in_order() -> None:
    names = figure_names()
    assert [n for n in names if n in OURS] == list(OURS)


def test_ridge_matches_scikit_learn() -> None:
    X, y, _ = diabetes()
    w, b = ridge(torch.as_tensor(X), torch.as_tensor(y), 0.3)
    ref = Ridge(alpha=0.3 * len(y)).fit(X, y)  # sklearn's ridge is n times ours
    np.testing.assert_allclose(w.numpy(), ref.coef_, rtol=1e-10, atol=1e-8)
    assert float(b) == pytest.approx(ref.intercept_, abs=1e-8)


def test_fit_regimes_overfit_and_ridge() -> None:
    data = fit_regimes(seed=0, n_alphas=15)
    under, good, over, tuned = data.fits
    assert over.train_mse < good.train_mse < under.train_mse
    assert over.test_mse > good.test_mse
    assert tuned.test_mse < over.test_mse and tuned.alpha > 0
    # the good fit is ordinary least squares: numpy's polynomial fit gives the same curve
    ref = np.polynomial.Polynomial.fit(data.x_train, data.y_train, good.degree)(data.grid)
    np.testing.assert_allclose(good.curve, ref, atol=1e-8)
    mse = np.mean(
        (
            np.polynomial.Polynomial.fit(data.x_train, data.y_train, good.degree)(data.x_test)
            - data.y_test
        )
        ** 2
    )
    assert good.test_mse == pytest.approx(mse, rel=1e-8)


def _boundary_minimum(panel, kind: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Dense reference: the loss minimized over 200 001 points of the region's boundary."""
    theta = np.linspace(0, 2 * np.pi, 200_001)
    u = np.stack([np.cos(theta), np.sin(theta)], 1)
    t = panel.t
    if kind == "l1":
        w = t * u / np.abs(u).sum(1, keepdims=True)
    elif kind == "l2":
        w = t * u
    else:  # rho r |u|_1 + (1 - rho)/2 r^2 = rho t + (1 - rho)/2 t^2
        a, b = (1 - ENET_RATIO) / 2, ENET_RATIO * np.abs(u).sum(1)
        c = ENET_RATIO * t + (1 - ENET_RATIO) / 2 * t**2
        w = ((-b + np.sqrt(b**2 + 4 * a * c)) / (2 * a))[:, None] * u
    d = w - panel.w_ols
    loss = 0.5 * np.einsum("mi,ij,mj->m", d, panel.H, d)
    return w[np.argmin(loss)]


def test_constraint_geometry_solutions() -> None:
    panels = constraint_geometry(seed=0, steps=18)
    for panel in panels:
        assert panel.solutions["l1"][1] == 0.0 and panel.solutions["l1"][0] > 0  # on an axis
        assert np.all(panel.solutions["l2"] != 0)
        for kind, w in panel.solutions.items():
            np.testing.assert_allclose(w, _boundary_minimum(panel, kind), atol=2e-3)
        # the same penalized problem solved by scikit-learn at the α found
        ref = SkLasso(alpha=panel.alphas["l1"], fit_intercept=False, tol=1e-12).fit(
            panel.X, panel.y
        )
        np.testing.assert_allclose(panel.solutions["l1"], ref.coef_, atol=1e-6)
    correlated = panels[1]
    assert np.all(
        correlated.solutions["enet"] > 0
    )  # the elastic net keeps both correlated features


def test_coefficient_paths_match_scikit_learn() -> None:
    paths, names = coefficient_paths(n_alphas=20, seed=0)
    lasso, ridge_path, _ = paths
    X, y, _ = diabetes()
    ref = sk_lasso_path(X, y, alphas=lasso.alphas, tol=1e-12, max_iter=100_000)[1]
    np.testing.assert_allclose(lasso.coefs, ref, atol=1e-5 * np.abs(ref).max())
    j = len(ridge_path.alphas) // 2
    ref_ridge = Ridge(alpha=ridge_path.alphas[j] * len(y)).fit(X, y).coef_
    np.testing.assert_allclose(ridge_path.coefs[:, j], ref_ridge, rtol=1e-8, atol=1e-8)
    from reglight.linear import kfold_indices

    folds = kfold_indices(len(y), 5, shuffle=True, seed=0)
    cv = LassoCV(alphas=lasso.alphas, cv=folds, tol=1e-10, max_iter=100_000).fit(X, y)
    assert lasso.alpha_cv == pytest.approx(cv.alpha_, rel=1e-9)
    assert (
        len(names) == 10
        and np.count_nonzero(lasso.coef_cv) < 10
        and np.all(ridge_path.coef_cv != 0)
    )


def test_dropout_mc_average_converges_to_enumerated_ensemble() -> None:
    n, p = 6, 0.5
    data = dropout_ensemble(n_units=n, p=p, epochs=30, repeats=3, seed=0)
    model = data.model
    # reference: every sub-network run through the model's own layers, one mask at a time
    with torch.no_grad():
        h = model[0](data.x_test)
        probs = torch.zeros_like(data.exact_probs)
        for bits in itertools.product((0.0, 1.0), repeat=n):
            mask = torch.tensor(bits, dtype=torch.float64)
            weight = (1 - p) ** mask.sum() * p ** (n - mask.sum())
            probs += weight * model[2](h * mask / (1 - p)).softmax(-1)
    torch.testing.assert_close(data.exact_probs, probs, rtol=0, atol=1e-12)
    assert data.accuracy["classic"] == data.accuracy["inverted"]
    assert data.max_logit_gap_classic < 1e-12  # consistent conventions: the same predictions
    assert data.max_prob_gap_geometric < 1e-12  # weight scaling = normalized geometric mean
    distance = data.mc_distance.mean(0)
    assert distance[-1] < distance[0] / 4  # k = 64 against k = 1
    assert -0.75 < data.slope < -0.3  # a Monte-Carlo error: about 1/sqrt(k)


def test_norm_axes_groups_are_the_documented_axes() -> None:
    groups, checks, _ = norm_axes(seed=0)
    by_kind = {g.kind: g for g in groups}
    assert all(g.matches for g in groups), [g.label for g in groups if not g.matches]
    n, c, h, w = by_kind["batch2d"].x.shape
    assert int(by_kind["batch2d"].group.sum()) == n * h * w
    assert int(by_kind["layer_chw"].group.sum()) == c * h * w
    assert int(by_kind["layer2d"].group.sum()) == c
    assert int(by_kind["layer1d"].group.sum()) == by_kind["layer1d"].x.shape[2]
    assert int(by_kind["masked1d"].group.sum()) < int(by_kind["batch1d"].group.sum())
    assert max(checks.values()) < 1e-12


def test_write_figures_is_deterministic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = write_figures(tmp_path / "a", ["constraint_geometry"], quick=True, seed=3)
    second = write_figures(tmp_path / "b", ["constraint_geometry"], quick=True, seed=3)
    assert [p.name for p in first] == [
        f"constraint_geometry.{e}" for e in ("png", "svg", "md", "json")
    ]
    for a, b in zip(first[:2], second[:2], strict=True):
        assert a.read_bytes() == b.read_bytes()
    caption = first[2].read_text(encoding="utf-8")
    assert "`reglight figures --only constraint_geometry --seed 3 --quick`" in caption
    numbers = json.loads(first[3].read_text(encoding="utf-8"))
    assert numbers["panel1_l1_w2"] == 0.0


def test_cli_figures_unknown_name_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["figures", "--only", "no_such_figure"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(
        "reglight figures: error: --only no_such_figure: no such figure; figures: "
    )
    assert all(name in err[0] for name in OURS)
    assert main(["figures", "--seed", "x"]) == 2
    assert main(["figures", "--list"]) == 0
    assert capsys.readouterr().out.split() == figure_names()
