"""medical_cnn with calibration (against scikit-learn) and with weight-averaging callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss

from reglight.callbacks import EMAWeightAveraging, StochasticWeightAveraging
from reglight.recipes.medical_cnn import MedicalCNN, MedMNISTDataModule, write_synthetic_medmnist

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


@pytest.fixture
def datamodule(tmp_path: Path) -> MedMNISTDataModule:
    write_synthetic_medmnist(tmp_path / "breastmnist.npz", n_samples=(48, 40, 40), seed=0)
    return MedMNISTDataModule(root=str(tmp_path), download=False, batch_size=16, augment=False)


def _trainer(callbacks: list[Any] | None = None, max_epochs: int = 1) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        callbacks=callbacks or [],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _logits(model: MedicalCNN, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    zs, ys = [], []
    with torch.no_grad():
        for x, y in loader:
            zs.append(model.evaluate(x))
            ys.append(y.view(-1))
    z = torch.cat(zs)
    return (z[:, 1] - z[:, 0]).double().numpy(), torch.cat(ys).numpy()


def test_platt_calibrated_test_metrics_match_scikit_learn(datamodule: MedMNISTDataModule) -> None:
    torch.manual_seed(0)
    model = MedicalCNN(width=8, hidden=16, calibration="platt")
    trainer = _trainer()
    trainer.fit(model, datamodule=datamodule)
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    s_val, y_val = _logits(model, datamodule.val_dataloader())
    s_test, y_test = _logits(model, datamodule.test_dataloader()[0])
    identity = LogisticRegression().fit(np.array([[-1.0], [1.0]]), np.array([0, 1]))
    identity.coef_[:] = 1.0
    identity.intercept_[:] = 0.0
    platt = CalibratedClassifierCV(FrozenEstimator(identity), method="sigmoid").fit(
        s_val[:, None], y_val
    )
    p = platt.predict_proba(s_test[:, None])[:, 1]
    assert metrics["test/calibrated_acc"] == pytest.approx(accuracy_score(y_test, p > 0.5))
    assert metrics["test/calibrated_nll"] == pytest.approx(log_loss(y_test, p), abs=1e-4)
    raw = 1 / (1 + np.exp(-s_test))
    assert metrics["test/acc"] == pytest.approx(accuracy_score(y_test, raw > 0.5))
    assert metrics["test/nll"] == pytest.approx(log_loss(y_test, raw), abs=1e-4)
    assert any("platt" in str(row[0]) for row in model.report()[0].rows)


def test_calibration_is_validated() -> None:
    with pytest.raises(ValueError, match="calibration"):
        MedicalCNN(calibration="isotonic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="platt"):
        MedicalCNN(task="multi-class", num_classes=3, in_channels=1, calibration="platt")


@pytest.mark.parametrize(
    "make",
    [
        lambda: EMAWeightAveraging(decay=0.9),
        lambda: StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=1),
    ],
)
def test_weight_averaging_callbacks_average_the_network_built_from_the_datamodule(
    datamodule: MedMNISTDataModule, make: Any
) -> None:
    """The network is built in `configure_model`, which both callbacks call before copying the model."""
    callback = make()
    model = MedicalCNN(width=8, hidden=16)
    trainer = _trainer([callback], max_epochs=2)
    trainer.fit(model, datamodule=datamodule)
    average = callback._average_model
    n_model = sum(p.numel() for p in model.parameters())
    assert n_model > 0 and sum(p.numel() for p in average.parameters()) == n_model
    # the model ends with the averaged weights
    source = average.module if hasattr(average, "module") else average
    for p, q in zip(model.parameters(), source.parameters()):
        assert torch.equal(p.detach().cpu(), q.detach().cpu())
