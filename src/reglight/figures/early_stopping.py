"""Gallery figure: early stopping with Prechelt's criteria on a real run of the medical recipe.

The medical recipe (`recipes/medical_cnn.yaml`: [MedicalCNN][reglight.recipes.medical_cnn.MedicalCNN] on
BreastMNIST with its weight decay, dropout and scheduled augmentation) is trained with its early stopping
replaced by [EarlyStopping][reglight.callbacks.EarlyStopping] on the validation loss with Prechelt's (1998)
progress-quotient rule (`criterion="pq"`) and `restore_best_weights=True`. The callback's generalization loss
$GL(t)$ and training progress $P_k(t)$ are recorded after every check, so that the figure shows both of
Prechelt's curves, $GL(t)$ and $PQ(t) = GL(t)/P_k(t)$, as the callback computed them, and where the simpler
$GL_\alpha$ rule would have stopped.

The data is read from `$REGLIGHT_DATA/breastmnist.npz`. Without it, the run uses a small generated dataset in
MedMNIST's format ([write_synthetic_medmnist][reglight.recipes.medical_cnn.write_synthetic_medmnist]) and
the figure and caption say so.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from typing_extensions import override

from reglight.callbacks import EarlyStopping
from reglight.figures._base import GalleryFigure, register
from reglight.figures.flat_sharp import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["EarlyStoppingData", "StoppingRecorder", "early_stopping_data", "early_stopping_figure"]


class StoppingRecorder(pl.Callback):
    """Records, after each early-stopping check, the losses and what the Prechelt callbacks computed.

    Lightning runs the early-stopping checks in `on_train_epoch_end` after every other callback's hook (it
    calls monitoring callbacks last), so the losses are read there and what the checks computed at the start
    of the next epoch, or at the end of training.

    Args:
        stop: The stopping callback with `criterion="pq"` (its `generalization_loss` is read after every
            check, its `training_progress` at each strip end).
    """

    def __init__(self, stop: EarlyStopping) -> None:
        self.stop = stop
        self.epochs: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.gl: list[float] = []
        self.pq_epochs: list[int] = []
        self.pk: list[float] = []
        self._pending = False

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The epoch's losses (the checks run later: Lightning calls monitoring callbacks last)."""
        metrics = trainer.callback_metrics
        if "val/loss" not in metrics or trainer.sanity_checking:
            return
        self.epochs.append(trainer.current_epoch)
        self.train_loss.append(float(metrics["train/loss"]))
        self.val_loss.append(float(metrics["val/loss"]))
        self._pending = True

    def _collect(self) -> None:
        if not self._pending:
            return
        self._pending = False
        self.gl.append(float(self.stop.generalization_loss or 0.0))
        if len(self.epochs) % self.stop.strip_length == 0:
            self.pq_epochs.append(self.epochs[-1])
            self.pk.append(float(self.stop.training_progress or math.nan))

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """What the checks of the previous epoch computed."""
        self._collect()

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """What the last check computed."""
        self._collect()


@dataclass
class EarlyStoppingData:
    """One run's curves and the callbacks' decisions.

    Attributes:
        epochs: Epoch of each check.
        train_loss: Epoch-mean training loss (with augmentation and dropout on).
        val_loss: Validation loss.
        gl: $GL(t)$ after each check (percent).
        pq_epochs: Epochs that end a training strip.
        pk: $P_k(t)$ at those epochs.
        threshold: The PQ threshold α of the stopping rule.
        gl_threshold: The GL threshold drawn for comparison (percent).
        strip_length: $k$.
        stopped_epoch: Epoch at which PQ stopped training (`None` if it ran out of epochs).
        best_epoch: Epoch whose weights were restored.
        restored: Whether the best weights were loaded back.
        test_auc: Test AUC of the restored weights.
        test_acc: Test accuracy of the restored weights.
        max_epochs: The epoch budget.
        synthetic: Whether generated data stood in for BreastMNIST.
        seconds: Wall time of fitting and testing.
    """

    epochs: list[int]
    train_loss: list[float]
    val_loss: list[float]
    gl: list[float]
    pq_epochs: list[int]
    pk: list[float]
    threshold: float
    gl_threshold: float
    strip_length: int
    stopped_epoch: int | None
    best_epoch: int | None
    restored: bool
    test_auc: float
    test_acc: float
    max_epochs: int
    synthetic: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def pq(self) -> list[float]:
        """$PQ = GL/P_k$ at the strip ends."""
        gl = dict(zip(self.epochs, self.gl, strict=True))
        return [
            gl[e] / p if p > 0 else math.inf for e, p in zip(self.pq_epochs, self.pk, strict=True)
        ]


def _gl_stop(data: EarlyStoppingData) -> int | None:
    """The first epoch whose GL exceeds `gl_threshold`: where the $GL_\\alpha$ rule would have stopped."""
    return next(
        (e for e, g in zip(data.epochs, data.gl, strict=True) if g > data.gl_threshold), None
    )


def _data_root() -> Path | None:
    env = os.environ.get("REGLIGHT_DATA")
    if env and (Path(env) / "breastmnist.npz").is_file():
        return Path(env)
    return None


def early_stopping_data(
    quick: bool = True,
    seed: int = 0,
    *,
    root: str | os.PathLike[str] | None = None,
    max_epochs: int | None = None,
    threshold: float = 1.0,
    strip_length: int = 5,
    gl_threshold: float = 5.0,
    overrides: tuple[str, ...] = (),
) -> EarlyStoppingData:
    """Train the medical recipe with Prechelt's PQ rule on the validation loss and record the curves.

    The recipe is built from `recipes/medical_cnn.yaml` through the same command-line parser as
    `reglight run medical_cnn`; its `EarlyStopping` (on validation AUC, patience 20) and checkpointing are
    replaced by `EarlyStopping("val/loss", criterion="pq", criterion_threshold=threshold,
    strip_length=strip_length, restore_best_weights=True)`, then the restored weights are tested.

    Args:
        quick: 8 epochs of a network 4 times narrower (`--model.width=8 --model.hidden=32`) instead of the
            recipe's 60 epochs at full width.
        seed: `seed_everything`.
        root: Folder with `breastmnist.npz`; default `$REGLIGHT_DATA`, else generated data.
        max_epochs: Epoch budget (overrides `quick`).
        threshold: Prechelt's α of the PQ rule (he used 0.5 to 3).
        strip_length: $k$ of the training progress.
        gl_threshold: The α of the GL rule drawn for comparison (percent).
        overrides: Further LightningCLI overrides of the recipe.

    Returns:
        An [EarlyStoppingData][reglight.figures.early_stopping.EarlyStoppingData].
    """
    import time

    from reglight.cli import ReglightCLI, find_recipe
    from reglight.recipes.medical_cnn import write_synthetic_medmnist

    epochs = max_epochs if max_epochs is not None else (8 if quick else 60)
    folder = Path(root) if root is not None else _data_root()
    synthetic = folder is None or not (folder / "breastmnist.npz").is_file()
    tmp = None
    if synthetic:
        tmp = tempfile.TemporaryDirectory(prefix="reglight-gallery-")
        folder = Path(tmp.name)
        write_synthetic_medmnist(folder / "breastmnist.npz", n_samples=(256, 64, 64), seed=seed)
    size = ("--model.width=8", "--model.hidden=32") if quick else ()
    args = [
        "--config",
        str(find_recipe("medical_cnn").path),
        f"--data.root={folder}",
        "--data.download=false",
        f"--trainer.max_epochs={epochs}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *size,
        *overrides,
        f"--seed_everything={seed}",
    ]
    try:
        cli = ReglightCLI(args, run=False, prog="reglight figures")
        trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
        callbacks[:] = [
            cb
            for cb in callbacks
            if not isinstance(cb, (ModelCheckpoint, EarlyStopping, pl.callbacks.EarlyStopping))
        ]
        stop = EarlyStopping(
            "val/loss",
            criterion="pq",
            criterion_threshold=threshold,
            strip_length=strip_length,
            restore_best_weights=True,
            train_monitor="train/loss",
            log_gap=False,
        )
        recorder = StoppingRecorder(stop)
        callbacks += [stop, recorder]
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        seconds = time.perf_counter() - start
    finally:
        if tmp is not None:
            tmp.cleanup()
    metrics = results[0] if results else {}
    return EarlyStoppingData(
        epochs=recorder.epochs,
        train_loss=recorder.train_loss,
        val_loss=recorder.val_loss,
        gl=recorder.gl,
        pq_epochs=recorder.pq_epochs,
        pk=recorder.pk,
        threshold=threshold,
        gl_threshold=gl_threshold,
        strip_length=strip_length,
        stopped_epoch=int(stop.stopped_epoch) if stop.stopped_by else None,
        best_epoch=stop.best_epoch,
        restored=bool(stop.restored),
        test_auc=float(metrics.get("test/auc", math.nan)),
        test_acc=float(metrics.get("test/acc", math.nan)),
        max_epochs=epochs,
        synthetic=synthetic,
        seconds=seconds,
    )


def early_stopping_figure(data: EarlyStoppingData) -> Figure:
    """Training and validation loss with the stop and restored epochs; GL and PQ over the epochs."""
    fig = new_figure(11.0, 4.2)
    ax, ax_gl = fig.subplots(1, 2)
    ax.plot(data.epochs, data.train_loss, color="C0", label="training loss (augmented, dropout on)")
    ax.plot(data.epochs, data.val_loss, color="C1", label="validation loss")
    if data.best_epoch is not None:
        ax.axvline(data.best_epoch, color="C2", ls="--", label=f"restored epoch {data.best_epoch}")
    if data.stopped_epoch is not None:
        ax.axvline(
            data.stopped_epoch, color="C4", ls=":", label=f"PQ stop, epoch {data.stopped_epoch}"
        )
    gl_stop = _gl_stop(data)
    if gl_stop is not None:
        ax.axvline(gl_stop, color="C3", ls=":", lw=0.8, label=f"GL would stop, epoch {gl_stop}")
    ax.set(xlabel="epoch", ylabel="cross-entropy")
    what = (
        "generated MedMNIST-format data (BreastMNIST absent)" if data.synthetic else "BreastMNIST"
    )
    ax.set_title(f"medical_cnn recipe on {what}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax_gl.plot(data.epochs, data.gl, color="C3", marker=".", label="GL(t) = 100 (E_va / E_opt − 1)")
    ax_gl.axhline(
        data.gl_threshold, color="C3", ls=":", lw=1, label=f"GL threshold {data.gl_threshold:g}"
    )
    ax_gl.axhline(
        data.threshold, color="C4", ls=":", lw=1, label=f"PQ threshold {data.threshold:g}"
    )
    if data.pq_epochs:
        ax_gl.plot(
            data.pq_epochs,
            data.pq,
            color="C4",
            marker="s",
            ls="--",
            label=f"PQ(t) = GL / P_{data.strip_length} (strip ends)",
        )
    ax_gl.set(
        xlabel="epoch",
        ylabel="percent / quotient",
        yscale="symlog",
        title="Prechelt's criteria (1998)",
    )
    ax_gl.legend(fontsize=8)
    ax_gl.grid(alpha=0.3)
    return fig


@register("early_stopping", 8)
def make(quick: bool, seed: int) -> GalleryFigure:
    """Figure 8 of the gallery: early stopping with Prechelt's PQ (and GL) on the medical recipe."""
    data = early_stopping_data(quick, seed)
    gl_stop = _gl_stop(data)
    numbers: dict[str, float] = {
        "gl_stop_epoch": float(gl_stop) if gl_stop is not None else math.nan,
        "stopped_epoch": float(data.stopped_epoch) if data.stopped_epoch is not None else math.nan,
        "restored_epoch": float(data.best_epoch) if data.best_epoch is not None else math.nan,
        "best_val_loss": min(data.val_loss),
        "test_auc": data.test_auc,
        "test_acc": data.test_acc,
        "max_gl": max(data.gl),
        "epochs_trained": float(len(data.epochs)),
        "synthetic_data": float(data.synthetic),
    }
    where = (
        "a generated dataset in BreastMNIST's format (`write_synthetic_medmnist`, 256/64/64 images: "
        "BreastMNIST was not found in `$REGLIGHT_DATA`)"
        if data.synthetic
        else "BreastMNIST (546 training, 78 validation, 156 test images, 28×28)"
    )
    size = " with a 4× narrower network (width 8, 32-unit FC)" if quick else ""
    stop = (
        f"PQ exceeded α = {data.threshold:g} at epoch {data.stopped_epoch}"
        if data.stopped_epoch is not None
        else f"PQ never exceeded α = {data.threshold:g} within {data.max_epochs} epochs"
    )
    gl_stop = _gl_stop(data)
    gl_note = (
        f"GL passed {data.gl_threshold:g} % first at epoch {gl_stop}, where the GL rule would have stopped"
        if gl_stop is not None
        else f"GL stayed below {data.gl_threshold:g} %"
    )
    caption = (
        f"A real run of the medical recipe (`recipes/medical_cnn.yaml`{size}) on {where}, "
        f"up to {data.max_epochs} epochs, with its early stopping replaced by "
        '`reglight.callbacks.EarlyStopping("val/loss", criterion="pq", '
        f"criterion_threshold={data.threshold:g}, strip_length={data.strip_length}, "
        "restore_best_weights=True)`. Left: the epoch-mean training loss (augmented images, dropout on) "
        "and the validation loss; right: Prechelt's generalization loss "
        "$GL(t) = 100\\,(E_{va}(t)/E_{opt}(t) - 1)$ after each epoch and the progress quotient "
        "$PQ = GL/P_k$ at the strip ends, as the callback computed them. Measured: "
        f"{stop}; {gl_note}; the weights of epoch {data.best_epoch} (lowest validation loss "
        f"{min(data.val_loss):.4f}) were restored and reach test AUC {data.test_auc:.3f}, "
        f"accuracy {data.test_acc:.3f}; largest GL {max(data.gl):.1f} %."
    )
    return GalleryFigure(
        name="early_stopping",
        title="Early stopping: Prechelt's GL and PQ on the medical recipe",
        figure=early_stopping_figure(data),
        caption=caption,
        numbers=numbers,
    )
