"""`MedicalCNN(ensemble_selection="member")`: each member keeps the weights of its own best validation epoch."""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import EarlyStopping
from reglight.recipes.medical_cnn import DeepEnsemble, MedicalCNN
from reglight.recipes.medical_cnn.model import MEMBER_BEST_KEY

EPOCHS = 5


class _Record(pl.Callback):
    """After each validation: the members' weights and their AUC computed by scikit-learn."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.states: list[list[dict[str, torch.Tensor]]] = []
        self.sklearn_auc: list[list[float]] = []
        self.logged_auc: list[list[float]] = []
        self.logged_best: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        members = pl_module.net.members
        self.states.append([copy.deepcopy(m.state_dict()) for m in members])
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            aucs = [
                roc_auc_score(self.y.numpy(), m(self.x).softmax(-1)[:, 1].numpy()) for m in members
            ]
        pl_module.train(was_training)
        self.sklearn_auc.append(aucs)
        metrics = trainer.callback_metrics
        self.logged_auc.append([float(metrics[f"val/member_{k}/auc"]) for k in range(len(members))])
        self.logged_best.append(float(metrics["val/member_best_auc"]))


def _data(seed: int = 0) -> tuple[DataLoader, DataLoader, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (96,), generator=g)
    x = torch.randn(96, 1, 28, 28, generator=g) + 0.3 * y.view(-1, 1, 1, 1)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=32)
    return train, val, x[64:], y[64:]


def _fit(
    callbacks: list[pl.Callback], tmp_path: Any, **kwargs: Any
) -> tuple[MedicalCNN, pl.Trainer]:
    pl.seed_everything(0)
    model = MedicalCNN(
        task="binary-class",
        num_classes=2,
        in_channels=1,
        width=4,
        hidden=8,
        lr=3e-3,
        ensemble=3,
        ensemble_selection="member",
        **kwargs,
    )
    train, val, _, _ = _data()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        num_sanity_val_steps=1,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, train, val)
    return model, trainer


def test_each_member_ends_with_the_weights_of_its_own_best_epoch(tmp_path: Any) -> None:
    _, _, vx, vy = _data()
    record = _Record(vx, vy)
    # EarlyStopping restores the epoch of the best ensemble first; the members' own bests replace it
    stop = EarlyStopping(
        "val/auc", mode="max", patience=50, restore_best_weights=True, log_gap=False
    )
    model, trainer = _fit([stop, record], tmp_path)
    assert isinstance(model.net, DeepEnsemble)
    # a later `Trainer.validate` scores the members but selects nothing
    selected = list(model.member_best_epoch)
    trainer.validate(model, _data()[1], verbose=False)
    assert model.member_best_epoch == selected
    assert len(record.states) == EPOCHS
    # the logged per-member AUC is scikit-learn's on the member's own predictions
    assert torch.allclose(
        torch.tensor(record.logged_auc),
        torch.tensor(record.sklearn_auc, dtype=torch.float32),
        atol=1e-5,
    )
    best_epochs = []
    for k, member in enumerate(model.net.members):
        aucs = [epoch[k] for epoch in record.sklearn_auc]
        best = max(range(EPOCHS), key=lambda e: (aucs[e], -e))  # the first epoch of the maximum
        best_epochs.append(best)
        assert model.member_best_epoch[k] == best
        for name, value in member.state_dict().items():
            assert torch.equal(value, record.states[best][k][name]), (k, name)
    # the members were selected at different epochs, not all at the ensemble's one
    assert len(set(best_epochs)) > 1, best_epochs
    # val/member_best_auc: the mean over members of the best AUC reached so far
    running = torch.tensor(record.logged_auc).cummax(0).values.mean(1)
    assert torch.allclose(torch.tensor(record.logged_best), running, atol=1e-6)


def test_member_bests_travel_in_the_checkpoint(tmp_path: Any) -> None:
    # last.ckpt is written at the end of the last epoch, before the members' bests are loaded back
    model, _ = _fit([ModelCheckpoint(tmp_path, save_last=True, save_top_k=0)], tmp_path)
    path = tmp_path / "last.ckpt"
    saved = torch.load(path, weights_only=False)[MEMBER_BEST_KEY]
    assert saved["epoch"] == model.member_best_epoch and len(saved["state"]) == 3
    loaded = MedicalCNN.load_from_checkpoint(path)
    assert loaded.member_best_epoch == model.member_best_epoch
    assert loaded.member_best_auc == pytest.approx(model.member_best_auc)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        expected = model.eval()(x)
        assert not torch.allclose(loaded.eval()(x), expected)  # the last epoch's weights
        assert loaded.load_member_bests() == model.member_best_epoch
        assert torch.allclose(loaded(x), expected, atol=1e-6)  # the selected members
    first = loaded._member_best_state[0]
    assert first is not None and all(
        torch.equal(v, model._member_best_state[0][n])  # type: ignore[index]
        for n, v in first.items()
    )


def test_joint_selection_and_validation() -> None:
    joint = MedicalCNN(task="binary-class", num_classes=2, in_channels=1, width=4, ensemble=2)
    assert joint.member_val_metrics is None
    single = MedicalCNN(
        task="binary-class", num_classes=2, in_channels=1, width=4, ensemble_selection="member"
    )
    assert single.member_val_metrics is None  # one network: nothing to select per member
    with pytest.raises(RuntimeError, match="ensemble_selection='member'"):
        joint.load_member_bests()
    with pytest.raises(ValueError, match=r"`ensemble_selection`.*'best'"):
        MedicalCNN(ensemble_selection="best")  # type: ignore[arg-type]
