"""The lasso recipe against scikit-learn on the same standardized training data, and end to end.

References: scikit-learn's ``Lasso`` / ``ElasticNet`` / ``LogisticRegression`` / ``LinearRegression``
solved to tight tolerances on the standardized training split, and closed forms.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression

from reglight.cli import main
from reglight.penalties import soft_threshold
from reglight.recipes.lasso import (
    SparseLinearModel,
    TabularDataModule,
    dataset_tensors,
    lipschitz_constant,
    metric_collection,
    path_figure,
    refit_logistic,
    standardization,
)


def _trainer(max_epochs: int = 3000, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        precision="64-true",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=10**6,
        **kwargs,
    )


def _train_split(data: TabularDataModule) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Raw training tensors and the standardized features (train statistics, ddof=0)."""
    x, y = dataset_tensors(data.train_dataset)  # type: ignore[arg-type]
    xn = x.numpy()
    return x, y, (xn - xn.mean(0)) / xn.std(0)


def _enet_objective(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, a: float, r: float
) -> float:
    return float(
        0.5 * np.mean((y - z @ w - b) ** 2)
        + a * r * np.abs(w).sum()
        + 0.5 * a * (1 - r) * np.square(w).sum()
    )


# ------------------------------------------------------------------------------------ objective


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(0.3, 1.0), (0.3, 0.5), (2.0, 0.1)])
def test_penalty_value_and_prox_match_sklearns_elastic_net(alpha: float, l1_ratio: float) -> None:
    """Value and proximal step of the recipe's penalty equal those of αρ|w|₁ + ½α(1-ρ)|w|²."""
    w = torch.linspace(-3, 3, 13, dtype=torch.float64)
    penalty = SparseLinearModel(alpha=alpha, l1_ratio=l1_ratio).penalty_hook.penalty
    expected = alpha * l1_ratio * w.abs().sum() + 0.5 * alpha * (1 - l1_ratio) * w.square().sum()
    torch.testing.assert_close(penalty.value([w]), expected)
    step = 0.7  # prox of t·(a|w| + ½c w²) = S_{ta}(v) / (1 + tc)
    closed = soft_threshold(w, step * alpha * l1_ratio) / (1 + step * alpha * (1 - l1_ratio))
    moved = w.clone()
    penalty.prox_([moved], step)
    torch.testing.assert_close(moved, closed)


def test_standardization_is_population_scaling_with_constant_columns_kept() -> None:
    x = torch.tensor([[1.0, 7.0, 0.0], [2.0, 7.0, 10.0], [6.0, 7.0, 20.0]], dtype=torch.float64)
    mean, scale = standardization(x)
    np.testing.assert_allclose(mean.numpy(), x.numpy().mean(0))
    np.testing.assert_allclose(scale.numpy(), [x[:, 0].numpy().std(), 1.0, x[:, 2].numpy().std()])


def test_lipschitz_constant_is_the_largest_hessian_eigenvalue() -> None:
    z = torch.randn(50, 4, dtype=torch.float64)
    z = (z - z.mean(0)) / z.std(0, correction=0)
    ones = torch.ones(50, 1, dtype=torch.float64)
    design = torch.cat([ones, z], 1)  # Hessian of ½·mean squared error over [b, w]
    top = torch.linalg.eigvalsh(design.T @ design / 50).max().item()
    assert lipschitz_constant(z, "regression") == pytest.approx(top, rel=1e-10)
    assert lipschitz_constant(z, "binary") == pytest.approx(top / 4, rel=1e-10)


# ------------------------------------------------------------------------ regression vs sklearn


@pytest.fixture(scope="module")
def diabetes_fit() -> Iterator[tuple[SparseLinearModel, TabularDataModule]]:
    """The minibatch module (batches of 64, one exact step per epoch) on diabetes, α = 0.5."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster on this tiny problem; restored below
    try:
        data = TabularDataModule("diabetes", batch_size=64, dtype="float64", seed=0)
        model = SparseLinearModel(alpha=0.5, path_figure=False, tol=1e-8)
        trainer = _trainer()
        trainer.fit(model, datamodule=data)
        assert model.converged_epoch is not None and model.converged_epoch < 1000
        yield model, data
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(0.5, 1.0), (0.1, 1.0), (3.0, 1.0), (0.5, 0.5)])
def test_minibatch_module_reaches_the_full_batch_solution(alpha: float, l1_ratio: float) -> None:
    data = TabularDataModule("diabetes", batch_size=64, dtype="float64", seed=0)
    model = SparseLinearModel(alpha=alpha, l1_ratio=l1_ratio, path_figure=False, tol=1e-8)
    _trainer().fit(model, datamodule=data)
    x, y, z = _train_split(data)
    yn = y.numpy()
    ref = (
        Lasso(alpha=alpha, tol=1e-14, max_iter=10**6)
        if l1_ratio == 1
        else ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-14, max_iter=10**6)
    ).fit(z, yn)
    w = model.coefficients()[0][0].numpy()
    np.testing.assert_array_equal(w != 0, ref.coef_ != 0)  # the same support
    f_ref = _enet_objective(z, yn, ref.coef_, ref.intercept_, alpha, l1_ratio)
    assert model.objective(x, y) == pytest.approx(f_ref, rel=1e-3)
    assert abs(model.objective(x, y) - f_ref) / f_ref < 1e-7  # in fact much closer
    np.testing.assert_allclose(w, ref.coef_, atol=1e-3 * np.abs(ref.coef_).max())


def test_stochastic_steps_with_decaying_step_approach_the_solution() -> None:
    """One proximal SGD step per minibatch of 32, step 1/(L·sqrt(1+epoch)): within 1% in 60 epochs.

    (Over five shuffling seeds: 0.1-0.8%; the constant step 1/L stays 3-100% above.)
    """
    data = TabularDataModule("diabetes", batch_size=32, dtype="float64", seed=0)
    model = SparseLinearModel(alpha=1.0, gradient="stochastic", path_figure=False)
    _trainer(max_epochs=60).fit(model, datamodule=data)
    x, y, z = _train_split(data)
    ref = Lasso(alpha=1.0, tol=1e-14, max_iter=10**6).fit(z, y.numpy())
    f_ref = _enet_objective(z, y.numpy(), ref.coef_, ref.intercept_, 1.0, 1.0)
    assert f_ref <= model.objective(x, y) < 1.01 * f_ref


def test_standardization_uses_the_training_split_only(
    diabetes_fit: tuple[SparseLinearModel, TabularDataModule],
) -> None:
    model, data = diabetes_fit
    x_train = dataset_tensors(data.train_dataset)[0].numpy()  # type: ignore[arg-type]
    x_all = data.data.X
    np.testing.assert_allclose(model.x_mean.numpy(), x_train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model.x_scale.numpy(), x_train.std(0), rtol=1e-12)
    assert not np.allclose(model.x_mean.numpy(), x_all.mean(0), rtol=1e-6)


def test_original_unit_coefficients_reproduce_predictions(
    diabetes_fit: tuple[SparseLinearModel, TabularDataModule],
) -> None:
    model, data = diabetes_fit
    x_test = data.test_dataset.tensors[0]  # type: ignore[union-attr]
    w, b = model.coefficients(original_units=True)
    with torch.no_grad():
        torch.testing.assert_close(x_test @ w[0] + b[0], model(x_test), rtol=1e-10, atol=1e-9)
        wr, br = model.refit_coefficients(original_units=True)
        torch.testing.assert_close(
            x_test @ wr[0] + br[0], model.forward_refit(x_test), rtol=1e-10, atol=1e-9
        )
    selected = model.selected_features()
    assert sorted(f.index for f in selected) == model.selected_indices()
    sizes = [abs(f.coef[0]) for f in selected]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    names = set(data.feature_names)
    for f in selected:
        assert f.name in names and f.coef[0] != 0
        assert f.coef_original[0] == pytest.approx(f.coef[0] / model.x_scale[f.index].item())


def test_refit_is_least_squares_on_the_selected_columns(
    diabetes_fit: tuple[SparseLinearModel, TabularDataModule],
) -> None:
    model, data = diabetes_fit
    _, y, z = _train_split(data)
    keep = model.selected_indices()
    ols = LinearRegression().fit(z[:, keep], y.numpy())
    w, b = model.refit_coefficients()
    np.testing.assert_allclose(w[0, keep].numpy(), ols.coef_, rtol=1e-8, atol=1e-8)
    assert b[0].item() == pytest.approx(ols.intercept_, rel=1e-10)
    dropped = [j for j in range(model.n_features) if j not in keep]
    assert (w[0, dropped] == 0).all()
    lasso_w = model.coefficients()[0][0, keep]
    assert w[0, keep].abs().sum() > lasso_w.abs().sum()  # the shrinkage is gone


def test_refit_logistic_matches_sklearn_l2() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((120, 3))
    y = (z @ np.array([1.5, -2.0, 0.5]) + rng.standard_normal(120) > 0).astype(np.int64)
    gamma = 0.01
    ref = LogisticRegression(C=1 / (120 * gamma), tol=1e-12, max_iter=10_000).fit(z, y)
    w, b = refit_logistic(torch.from_numpy(z), torch.from_numpy(y), 1, ridge=gamma)
    np.testing.assert_allclose(w[0].numpy(), ref.coef_[0], rtol=1e-5)
    assert b[0].item() == pytest.approx(ref.intercept_[0], rel=1e-5)


# ---------------------------------------------------------------------------- classification


def _logistic_objective(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, a: float
) -> float:
    eta = z @ w.T + b
    if eta.shape[1] == 1:
        loss = np.logaddexp(0, eta[:, 0]) - y * eta[:, 0]
    else:
        loss = np.logaddexp.reduce(eta, axis=1) - eta[np.arange(len(y)), y]
    return float(loss.mean() + a * np.abs(w).sum())


def test_logistic_lasso_matches_sklearn_on_breast_cancer() -> None:
    data = TabularDataModule("breast_cancer", batch_size=None, dtype="float64")
    model = SparseLinearModel(alpha=0.05, path_figure=False, tol=1e-8)
    _trainer().fit(model, datamodule=data)
    x, y, z = _train_split(data)
    yn = y.numpy()
    ref = LogisticRegression(
        C=1 / (len(yn) * 0.05), l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=100_000
    ).fit(z, yn)
    w = model.coefficients()[0].numpy()
    np.testing.assert_array_equal(w != 0, ref.coef_ != 0)
    f_ref = _logistic_objective(z, yn, ref.coef_, ref.intercept_, 0.05)
    assert model.objective(x, y) == pytest.approx(f_ref, rel=1e-3)


def test_multinomial_lasso_from_a_csv_file(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    path = tmp_path / "iris.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*iris.feature_names, "species"])
        for row, code in zip(iris.data, iris.target):
            writer.writerow([*row, iris.target_names[code]])
    data = TabularDataModule(str(path), target="species", batch_size=32, dtype="float64")
    model = SparseLinearModel(alpha=0.05, path_figure=False, tol=1e-8)
    _trainer().fit(model, datamodule=data)
    assert model.task == "multiclass" and model.class_names == list(iris.target_names)
    x, y, z = _train_split(data)
    yn = y.numpy()
    ref = LogisticRegression(
        C=1 / (len(yn) * 0.05), l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=100_000
    ).fit(z, yn)
    w = model.coefficients()[0].numpy()
    np.testing.assert_array_equal(w != 0, ref.coef_ != 0)
    f_ref = _logistic_objective(z, yn, ref.coef_, ref.intercept_, 0.05)
    assert model.objective(x, y) == pytest.approx(f_ref, rel=1e-3)


# ---------------------------------------------------------------------------- correlated pair


@pytest.mark.parametrize("seed", [0, 3])
def test_correlated_pair_lasso_keeps_one_elastic_net_both(seed: int) -> None:
    """Two informative features with correlation 0.999 (plus 8 noise features).

    The elastic net keeps both with nearly equal coefficients (Zou & Hastie's grouping effect) on
    every draw. Whether the lasso's second feature enters depends on the draw: on seed 3 it keeps one
    only; on each seed the module's lasso support is scikit-learn's.
    """
    supports = {}
    for l1_ratio in (1.0, 0.5):
        data = TabularDataModule(
            "synthetic",
            n_samples=200,
            n_features=10,
            n_informative=1,
            group_size=2,
            correlation=0.999,
            batch_size=None,
            dtype="float64",
            val_fraction=0.0,
            seed=seed,
        )
        model = SparseLinearModel(alpha=0.5, l1_ratio=l1_ratio, path_figure=False, tol=1e-8)
        _trainer().fit(model, datamodule=data)
        w = model.coefficients()[0][0].numpy()
        _, y, z = _train_split(data)
        ref = ElasticNet(alpha=0.5, l1_ratio=l1_ratio, tol=1e-14, max_iter=10**6).fit(z, y.numpy())
        np.testing.assert_array_equal(w != 0, ref.coef_ != 0)
        supports[l1_ratio] = w[:2]
    enet = supports[0.5]
    assert (enet != 0).all() and abs(enet[0] - enet[1]) < 0.05 * abs(enet).max()
    if seed == 3:
        assert int((supports[1.0] != 0).sum()) == 1


# ------------------------------------------------------------------------------ the rest of it


def test_cross_validated_alpha_is_enet_cvs_choice() -> None:
    from reglight.linear import enet_cv

    data = TabularDataModule("diabetes", batch_size=None)
    model = SparseLinearModel(alpha=None, alpha_rule="1se", n_alphas=30, path_figure=False)
    _trainer(max_epochs=5).fit(model, datamodule=data)
    _, y, z = _train_split(data)
    expected = enet_cv(z, y.numpy(), l1_ratio=1.0, n_alphas=30, eps=1e-3, cv=5, rule="1se")
    assert model.alpha_ == pytest.approx(expected.alpha, rel=1e-6)
    assert model.penalty_hook.penalty.alpha == pytest.approx(model.alpha_)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    data = TabularDataModule("breast_cancer", batch_size=None)
    model = SparseLinearModel(alpha=0.1, path_figure=False, tol=1e-5)
    trainer = _trainer(max_epochs=300)
    trainer.fit(model, datamodule=data)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = SparseLinearModel.load_from_checkpoint(ckpt)
    assert loaded.task == "binary" and loaded.alpha_ == pytest.approx(0.1)
    x = data.test_dataset.tensors[0]  # type: ignore[union-attr]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.double()), model(x.double()))
    assert loaded.selected_indices() == model.selected_indices()


def test_path_figure_draws_every_feature() -> None:
    alphas = np.geomspace(1.0, 1e-3, 20)
    coefs = np.stack([np.maximum(0, 1 - alphas * k) for k in (1, 2, 4)])
    fig = path_figure(alphas, coefs, ["a", "b", "c"], 0.1)
    assert len(fig.axes[0].get_lines()) == 3 + 2  # three paths, the zero line, the α marker


def test_arguments_are_validated() -> None:
    for kwargs, name in [
        ({"alpha": -1.0}, "alpha"),
        ({"l1_ratio": 0.0}, "l1_ratio"),
        ({"task": "ranking"}, "task"),
        ({"alpha_rule": "2se"}, "alpha_rule"),
        ({"cv_folds": 1}, "cv_folds"),
        ({"gradient": "newton"}, "gradient"),
        ({"lr": 0.0}, "lr"),
        ({"n_threads": 0}, "n_threads"),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            SparseLinearModel(**kwargs)
    with pytest.raises(ValueError, match="'binary' needs 2 classes"):
        _trainer(max_epochs=1).fit(
            SparseLinearModel(alpha=1.0, task="binary"), datamodule=TabularDataModule("diabetes")
        )


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_metric_collections_match_sklearn_metrics(task: str) -> None:
    from sklearn import metrics as skm

    g = torch.Generator().manual_seed(0)
    k = 3 if task == "multiclass" else 2
    if task == "regression":
        out, y = torch.randn(50, generator=g), torch.randn(50, generator=g)
    elif task == "binary":
        out, y = torch.randn(50, generator=g), torch.randint(0, 2, (50,), generator=g)
    else:
        out, y = torch.randn(50, 3, generator=g), torch.randint(0, 3, (50,), generator=g)
    collection = metric_collection(task, k, prefix="test/", postfix="_refit")
    for part in torch.arange(50).split(16):  # in batches, as in an evaluation loop
        collection.update(out[part], y[part])
    got = {key: float(v) for key, v in collection.compute().items()}
    if task == "regression":
        expected = {
            "test/mse_refit": skm.mean_squared_error(y, out),
            "test/r2_refit": skm.r2_score(y, out),
        }
    else:
        logits = out.double()
        prob = torch.sigmoid(logits) if task == "binary" else torch.softmax(logits, -1)
        prob2 = torch.stack([1 - prob, prob], 1) if task == "binary" else prob
        expected = {
            "test/loss_refit": skm.log_loss(y, prob2, labels=list(range(k))),
            "test/acc_refit": skm.accuracy_score(y, prob2.argmax(1)),
            "test/auroc_refit": skm.roc_auc_score(y, prob)
            if task == "binary"
            else skm.roc_auc_score(y, prob, multi_class="ovr"),
        }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


class _ThreadProbe(SparseLinearModel):
    """Records torch's thread count in every forward pass (inside training and test steps)."""

    seen: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return super().forward(x)


@pytest.mark.parametrize("n_threads", [1, None])
def test_thread_count_is_scoped_to_the_models_own_computations(n_threads: int | None) -> None:
    threads = torch.get_num_threads()
    outside = 2 if threads != 2 else 3
    torch.set_num_threads(outside)
    try:
        model = _ThreadProbe(alpha=1.0, path_figure=False, n_threads=n_threads)
        model.seen = []
        data = TabularDataModule("diabetes", batch_size=None)
        trainer = _trainer(max_epochs=3)
        trainer.fit(model, datamodule=data)
        assert torch.get_num_threads() == outside  # restored after every step
        trainer.test(model, datamodule=data, verbose=False)
        assert torch.get_num_threads() == outside
        assert model.seen == [n_threads or outside] * 4  # three training steps, one test step
    finally:
        torch.set_num_threads(threads)


def _coefficient_csv(root: Path) -> dict[str, float]:
    (path,) = root.rglob("lasso_coefficients.csv")
    with path.open() as fh:
        return {row["feature"]: float(row["coef (std)"]) for row in csv.DictReader(fh)}


FAST = ["--model.alpha=1.0", "--model.path_figure=false", "--data.batch_size=64"]


def test_reglight_run_lasso_prints_selected_features_and_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    code = main(
        [
            "run",
            "lasso",
            "--model.n_alphas=20",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={logs}",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for key in ("Selected features", "bmi", "s5", "test/r2_refit", "relaxed refit"):
        assert key in out
    assert list(logs.rglob("lasso_path.png"))
    coefs = _coefficient_csv(logs)
    assert set(coefs) == set(TabularDataModule("diabetes").feature_names)

    code = main(
        [
            "run",
            "lasso",
            "--data.dataset=breast_cancer",  # the task follows the data
            "--model.n_alphas=20",
            "--model.tol=1e-4",
            "--model.path_figure=false",
            "--trainer.logger=false",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for key in ("test/auroc", "test/acc_refit", "worst"):
        assert key in out


@pytest.mark.ddp
def test_ddp_two_processes_give_the_coefficients_of_one(tmp_path: Path) -> None:
    """266 training rows: 133 per process, so the summed gradient is the one-process gradient."""
    args = [
        "run",
        "lasso",
        *FAST,
        "--model.tol=1e-7",
        "--trainer.accelerator=cpu",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, f"--trainer.logger.save_dir={one}"]) == 0
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglight",
            *args,
            f"--trainer.logger.save_dir={two}",
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Selected features") == 1  # printed by rank 0 only
    single, ddp = _coefficient_csv(one), _coefficient_csv(two)
    assert single.keys() == ddp.keys()
    scale = max(abs(v) for v in single.values())
    for name, value in single.items():
        assert ddp[name] == pytest.approx(value, abs=1e-4 * scale)
        assert (ddp[name] == 0) == (value == 0)
