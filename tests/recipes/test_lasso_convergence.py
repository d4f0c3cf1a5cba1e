"""The lasso recipe says when its solver stopped before its tolerance, and marks the summary.

References: scikit-learn's `Lasso` solved to a tight tolerance (its solution satisfies the KKT
conditions the recipe measures) and scikit-learn's `ConvergenceWarning` category.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import Lasso

from reglight.cli import main
from reglight.linear import ConvergenceWarning
from reglight.recipes.lasso import SparseLinearModel, TabularDataModule, dataset_tensors

QUIET = ["--model.n_alphas=20", "--model.path_figure=false", "--trainer.logger=false"]


def _fit(max_epochs: int, alpha: float = 1.0) -> tuple[SparseLinearModel, TabularDataModule]:
    data = TabularDataModule("diabetes", batch_size=512)
    model = SparseLinearModel(alpha=alpha, path_figure=False)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        precision="64-true",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=data)
    return model, data


def test_kkt_violation_vanishes_at_scikit_learns_solution_only() -> None:
    model, data = _fit(max_epochs=3)
    x, y = dataset_tensors(data.train_dataset)  # type: ignore[arg-type]
    capped = model.kkt_violation(x, y)
    z = ((x - model.x_mean) / model.x_scale).numpy()
    ref = Lasso(alpha=1.0, tol=1e-12, max_iter=100_000).fit(z, y.numpy())
    with torch.no_grad():
        model.linear.weight.copy_(torch.as_tensor(ref.coef_)[None])  # type: ignore[union-attr]
        model.linear.bias.fill_(float(ref.intercept_))  # type: ignore[union-attr]
    assert model.kkt_violation(x, y) < 1e-6 < 1e-2 < capped


def test_capped_fit_warns_and_records_where_it_stopped() -> None:
    with pytest.warns(ConvergenceWarning, match="stopped after 3 epochs before its tolerance"):
        model, _ = _fit(max_epochs=3)
    conv = model.convergence
    assert conv is not None and not conv.converged
    assert conv.epochs == 3 and conv.last_step > conv.tol
    assert "not converged" in model.coefficient_table().title


def test_capped_recipe_run_warns_and_marks_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["run", "lasso", "--data.dataset=breast_cancer", "--trainer.max_epochs=20", *QUIET]
    with pytest.warns(SklearnConvergenceWarning, match="KKT violation") as caught:
        assert main(args) == 0
    assert any(w.category is ConvergenceWarning for w in caught)
    out = capsys.readouterr().out
    assert "not converged (step" in out
    words = " ".join(out.split())  # the table printer may wrap the title
    assert "l1_ratio=1) -- solver not converged (step" in words


def test_default_recipe_run_on_diabetes_converges_without_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SklearnConvergenceWarning)
        assert main(["run", "lasso", *QUIET]) == 0
    out = capsys.readouterr().out
    assert "not converged" not in out
    assert re.search(r"status\W+converged\W", out)
