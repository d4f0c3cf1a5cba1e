"""The LightningModule of the medical-image CNN recipe."""

from __future__ import annotations

from typing import Any, Literal, cast

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric, Metric, MetricCollection
from typing_extensions import override

from reglight._validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_probability,
)
from reglight.calibration import CALIBRATIONS, PlattScaling, TemperatureScaling, make_calibrator

from .data import TASKS
from .metrics import (
    medmnist_confusion_matrix,
    medmnist_inputs,
    medmnist_metric_collection,
    medmnist_metrics,
    scores_from_logits,
)
from .network import DeepEnsemble, SmallCNN, average_logits, check_architecture

__all__ = ["MedicalCNN"]

#: Checkpoint key of the members' best weights with `ensemble_selection="member"`.
MEMBER_BEST_KEY = "reglight_member_best"


def _key(split: str) -> str:
    """ModuleDict key of a split (`"train"` itself would clash with `nn.Module.train`)."""
    return f"{split}_split"


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and normalization parameters (all 1-d tensors) are not weight-decayed."""
    return param.ndim <= 1 or name.endswith(".bias")


class MedicalCNN(pl.LightningModule):
    """A small CNN for MedMNIST with stacked regularization.

    The stack (each piece can be switched off for the ablation):

    - **L2 weight decay** `weight_decay` on convolution and linear weights (not on biases or norms). With
      `optimizer="adam"` or `"sgd"` it is the classic coupled L2 term, the gradient of
      `(λ/2)·‖θ‖²`; with `"adamw"` it is decoupled (Loshchilov & Hutter 2019). A
      `reglight.callbacks.PenaltyHook` on the Trainer is the alternative (set `weight_decay=0` then).
    - **Dropout** after the fully connected layer, optional DropBlock, a small network (`depth`,
      `width`): see [SmallCNN][reglight.recipes.medical_cnn.SmallCNN].
    - Augmentation and early stopping live in the datamodule and the Trainer's callbacks.

    The task (loss and metrics) comes from the datamodule's `spec` (`medmnist.INFO`) unless given:
    cross-entropy over `num_classes` outputs for binary, multi-class and ordinal tasks (as medmnist's
    own training scripts do), binary cross-entropy per label for multi-label tasks. Validation logs
    `val/loss`, `val/auc` and `val/acc` (AUC and ACC computed as `medmnist.Evaluator` does, see
    [medmnist_metric_collection][reglight.recipes.medical_cnn.medmnist_metric_collection]); model
    selection and early stopping use `val/auc`.

    Testing evaluates every loader of `trainer.datamodule.test_splits` (the test split, the training split
    without augmentation and the validation split) and logs `test/{auc,acc,loss}`,
    `test/{train,val}_{auc,acc,loss}` and the generalization gap `test/gap_auc` (train AUC − test AUC),
    `test/gap_acc` and `test/gap_loss` (test loss − train loss), plus the test confusion matrix as a
    figure and a table through `reglight.logging`.
    [report][reglight.recipes.medical_cnn.MedicalCNN.report] returns the same as printable tables.

    Args:
        depth: Number of convolution stages.
        width: Channels of the first stage (doubled at every stage).
        blocks_per_stage: Convolution blocks per stage.
        hidden: Units of the fully connected layer.
        dropout: Dropout probability after the fully connected layer.
        dropblock: DropBlock probability on the last two stages (0 disables it).
        block_size: DropBlock block size.
        norm: Normalization: `"batch"`, `"ghost"`, `"renorm"`, `"group"`, `"layer2d"` or `"none"`
            (`reglight.nn.convert_norms`).
        virtual_batch_size: Virtual batch size of ghost batch norm (`norm="ghost"` only).
        optimizer: `"adam"`, `"adamw"` or `"sgd"` (Nesterov momentum).
        lr: Peak learning rate.
        weight_decay: L2 weight decay λ on convolution and linear weights (0 disables it).
        momentum: SGD momentum.
        lr_schedule: `"cosine"` (cosine decay to 0 over `trainer.max_epochs`) or `"constant"`.
        label_smoothing: Label smoothing of the cross-entropy loss (0 disables it).
        mixup: Mixup (Zhang et al. 2018) concentration α: each training batch is replaced by
            `λ·x + (1−λ)·x[π]` with `λ ~ Beta(α, α)` and a random permutation `π`, and the loss by
            `λ·L(y) + (1−λ)·L(y[π])`; 0 disables it.
        tta: Test-time augmentation: validate, test and predict on the average of the class probabilities
            of each image and its horizontal mirror (see
            [evaluate][reglight.recipes.medical_cnn.MedicalCNN.evaluate]).
        calibration: Calibration of the output layer fitted on the validation split at test time:
            `"none"`, `"temperature"` (temperature scaling, Guo et al. 2017) or `"platt"` (Platt scaling,
            binary tasks only); see [reglight.calibration][reglight.calibration]. Testing then also logs
            `test/calibrated_{auc,acc,nll}` (the 0.5 threshold on the calibrated probabilities) next to the
            uncalibrated `test/{auc,acc}` and `test/nll`, and prediction returns calibrated scores.
        ema_decay: Decay of an exponential moving average of the weights (and batch-norm statistics),
            updated after every training batch and used for validation, testing and prediction (Polyak &
            Juditsky 1992); 0 disables it.
        ensemble: Number of networks trained side by side as a
            [DeepEnsemble][reglight.recipes.medical_cnn.DeepEnsemble] (each from its own initialization and
            with its own dropout masks, trained on the sum of their losses, so that each takes the steps it
            would take alone on the same batches); validation, early stopping, testing and prediction use
            their average probability. 1 trains a single network; `K` costs about `K` times as much.
        ensemble_selection: Which weights of an ensemble are kept. `"joint"`: the members' weights of one
            epoch, chosen by the callbacks on the ensemble's validation metrics (an
            [EarlyStopping][reglight.callbacks.EarlyStopping] with `restore_best_weights=True` restores the
            epoch of the best ensemble). `"member"`: each member's weights at the epoch of **its own** best
            validation AUC, as if each were trained alone with early stopping; they are loaded back when
            training ends (after the callbacks' `on_train_end`, so they replace what EarlyStopping restored)
            and saved in checkpoints for resuming. Each epoch logs `val/member_{k}/auc` and
            `val/member_{k}/acc`, and `val/member_best_auc`, the mean over members of the best AUC each has
            reached so far: it rises whenever one member improves, so an EarlyStopping monitoring it (mode
            `max`) stops when no member has improved for `patience` epochs. With EMA the members' averaged
            weights are selected. No effect when `ensemble=1`.
        task: MedMNIST task type; `None` takes it from the datamodule.
        num_classes: Number of outputs; `None` takes it from the datamodule.
        in_channels: Image channels; `None` takes it from the datamodule.
        class_names: Class names for the confusion matrix; `None` takes them from the datamodule.

    Examples:
        >>> import torch
        >>> model = MedicalCNN(task="binary-class", num_classes=2, in_channels=1, width=8)
        >>> model(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        depth: int = 3,
        width: int = 32,
        blocks_per_stage: int = 2,
        hidden: int = 128,
        dropout: float = 0.2,
        dropblock: float = 0.0,
        block_size: int = 3,
        norm: str = "batch",
        virtual_batch_size: int = 16,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        momentum: float = 0.9,
        lr_schedule: Literal["cosine", "constant"] = "cosine",
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        tta: bool = False,
        calibration: Literal["none", "temperature", "platt"] = "none",
        ema_decay: float = 0.0,
        ensemble: int = 1,
        ensemble_selection: Literal["joint", "member"] = "joint",
        task: str | None = None,
        num_classes: int | None = None,
        in_channels: int | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, ("adam", "adamw", "sgd"))
        check_positive("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_probability("momentum", momentum)
        check_choice("lr_schedule", lr_schedule, ("cosine", "constant"))
        check_probability("label_smoothing", label_smoothing)
        check_probability("ema_decay", ema_decay)
        check_choice("calibration", calibration, CALIBRATIONS)
        check_nonnegative("mixup", mixup)
        check_positive_int("ensemble", ensemble)
        check_choice("ensemble_selection", ensemble_selection, ("joint", "member"))
        if task is not None:
            check_choice("task", task, TASKS)
        if num_classes is not None:
            check_positive_int("num_classes", num_classes, minimum=2)
        if in_channels is not None:
            check_positive_int("in_channels", in_channels)
        check_architecture(
            depth=depth,
            width=width,
            blocks_per_stage=blocks_per_stage,
            hidden=hidden,
            dropout=dropout,
            dropblock=dropblock,
            block_size=block_size,
            norm=norm,
            virtual_batch_size=virtual_batch_size,
        )
        self.save_hyperparameters()
        self.net: SmallCNN | DeepEnsemble | None = None
        self.ema_net: AveragedModel | None = None
        self.val_metrics: MetricCollection | None = None
        self.member_val_metrics: nn.ModuleList | None = None
        #: Per member: the best validation AUC, its epoch and a CPU copy of the weights (member selection).
        self.member_best_auc: list[float] = []
        self.member_best_epoch: list[int] = []
        self._member_best_state: list[dict[str, Tensor] | None] = []
        self.test_metrics = nn.ModuleDict()
        self.test_losses = nn.ModuleDict()
        self.test_confusion: Metric | None = None
        self.results: dict[str, dict[str, float]] = {}
        self.calibrated_results: dict[str, float] = {}
        self.confusion: Tensor | None = None
        self.calibrator: TemperatureScaling | PlattScaling | None = None
        self._calibration_logits: dict[str, list[Tensor]] = {}
        self._calibration_targets: dict[str, list[Tensor]] = {}
        if task is not None and num_classes is not None and in_channels is not None:
            self._build()

    # ------------------------------------------------------------------------------------------ build

    @property
    def task(self) -> str:
        """The MedMNIST task type (known once the model is built)."""
        return str(self.hparams["task"])

    @property
    def _multilabel(self) -> bool:
        return self.task == "multi-label, binary-class"

    def _build(self) -> None:
        hp = self.hparams
        if hp["calibration"] != "none" and self._multilabel:
            raise ValueError(
                f"`calibration={hp['calibration']!r}` needs a single-label task, got task={hp['task']!r}"
            )
        if hp["calibration"] == "platt" and hp["task"] != "binary-class":
            raise ValueError(
                f"`calibration='platt'` is binary; use 'temperature' for task={hp['task']!r}"
            )
        self.calibrator = make_calibrator(hp["calibration"])

        def network() -> SmallCNN:
            return SmallCNN(
                in_channels=hp["in_channels"],
                num_classes=hp["num_classes"],
                depth=hp["depth"],
                width=hp["width"],
                blocks_per_stage=hp["blocks_per_stage"],
                hidden=hp["hidden"],
                dropout=hp["dropout"],
                dropblock=hp["dropblock"],
                block_size=hp["block_size"],
                norm=hp["norm"],
                virtual_batch_size=hp["virtual_batch_size"],
            )

        members = int(hp.get("ensemble", 1))
        self.net = (
            network()
            if members == 1
            else DeepEnsemble([network() for _ in range(members)], multilabel=self._multilabel)
        )
        self.val_metrics = medmnist_metric_collection(hp["task"], hp["num_classes"], prefix="val/")
        if members > 1 and hp.get("ensemble_selection", "joint") == "member":
            self.member_val_metrics = nn.ModuleList(
                medmnist_metric_collection(hp["task"], hp["num_classes"], prefix=f"val/member_{k}/")
                for k in range(members)
            )
            self.member_best_auc = [-float("inf")] * members
            self.member_best_epoch = [-1] * members
            self._member_best_state = [None] * members
        if hp["ema_decay"] > 0:
            self.ema_net = AveragedModel(
                self.net, multi_avg_fn=get_ema_multi_avg_fn(hp["ema_decay"]), use_buffers=True
            )
            # never trained directly (and so no unused-parameter error under DDP)
            self.ema_net.requires_grad_(False)

    def setup(self, stage: str) -> None:
        """Take the task, classes and channels from `trainer.datamodule.spec` and build the network."""
        self.configure_model()

    def configure_model(self) -> None:
        """Build the network (once), from the arguments or `trainer.datamodule.spec`.

        Weight-averaging callbacks call this hook before they copy the model (Lightning's
        `WeightAveraging`, reglight's [StochasticWeightAveraging][reglight.callbacks.StochasticWeightAveraging]).
        """
        if self.net is not None:
            return
        spec = getattr(self._datamodule(), "spec", None)
        if spec is None and None in (self.hparams["task"], self.hparams["num_classes"]):
            raise ValueError(
                "MedicalCNN needs `task`, `num_classes` and `in_channels`, either as arguments or from a "
                "datamodule with a `spec` attribute (such as MedMNISTDataModule)"
            )
        if spec is not None:
            for key, value in (
                ("task", spec.task),
                ("num_classes", spec.num_classes),
                ("in_channels", spec.n_channels),
                ("class_names", list(spec.label_names)),
            ):
                if self.hparams[key] is None:
                    self.hparams[key] = value
        if self.hparams["in_channels"] is None:
            self.hparams["in_channels"] = 1
        self._build()

    # ----------------------------------------------------------------------------------------- steps

    def forward(self, x: Tensor) -> Tensor:
        """Logits `(N, num_classes)`."""
        if self.net is None:
            raise RuntimeError(
                "the network is built in `setup()` (or when task/num_classes are given)"
            )
        return self.net(x)

    def evaluate(self, x: Tensor) -> Tensor:
        """Logits used for validation, testing and prediction.

        These come from the weight average when `ema_decay > 0`, else from the network itself. Without
        `tta` they are the network's output. With `tta` the class probabilities of the image and of its
        horizontal mirror are averaged, `p̄ = (p(x) + p(flip(x))) / 2`, and returned as logits of `p̄`
        (`log p̄` for softmax tasks, `logit p̄` for multi-label ones), so that the
        metrics and the loss see the averaged prediction.

        Args:
            x: Images `(N, C, H, W)`.

        Returns:
            Logits `(N, num_classes)`.
        """
        return self._with_tta(self.ema_net if self.ema_net is not None else self, x)

    def _with_tta(self, net: nn.Module, x: Tensor) -> Tensor:
        """`net(x)`, or with `tta` the logits of the average of its probabilities on `x` and its mirror."""
        logits = net(x)
        if not self.hparams["tta"]:
            return logits
        return average_logits([logits, net(x.flip(-1))], self._multilabel)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy (binary / multi-class / ordinal) or per-label binary cross-entropy (multi-label)."""
        smoothing = float(self.hparams["label_smoothing"])
        if self._multilabel:
            t = target.float()
            if smoothing:
                t = t * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(logits, t)
        return F.cross_entropy(logits, target, label_smoothing=smoothing)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        alpha = float(self.hparams["mixup"])
        if alpha > 0:
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            perm = torch.randperm(len(x), device=x.device)
            losses = [
                lam * self.loss(z, y) + (1 - lam) * self.loss(z, y[perm])
                for z in self._member_logits(lam * x + (1 - lam) * x[perm])
            ]
        else:
            losses = [self.loss(z, y) for z in self._member_logits(x)]
        # the sum over ensemble members (see DeepEnsemble); logged as their mean
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        self.log(
            "train/loss",
            loss / len(losses),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(x),
            sync_dist=True,
        )
        return loss

    def _member_logits(self, x: Tensor) -> list[Tensor]:
        """The logits the training loss is computed on: one tensor per ensemble member."""
        if isinstance(self.net, DeepEnsemble):
            return self.net.member_logits(x)
        return [self(x)]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_net is not None and self.net is not None:
            self.ema_net.update_parameters(self.net)

    def _evaluated_members(self) -> nn.ModuleList:
        """The ensemble members validation evaluates: the weight averages' with EMA, else the trained ones."""
        net = self.ema_net.module if self.ema_net is not None else self.net
        assert isinstance(net, DeepEnsemble)
        return net.members

    def _member_metrics(self) -> list[MetricCollection]:
        assert self.member_val_metrics is not None
        return [cast(MetricCollection, m) for m in self.member_val_metrics]

    def _evaluate_members(self, x: Tensor) -> list[Tensor]:
        """Each member's logits as [evaluate][reglight.recipes.medical_cnn.MedicalCNN.evaluate] sees them."""
        return [self._with_tta(member, x) for member in self._evaluated_members()]

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        if self.member_val_metrics is None:
            logits = self.evaluate(x)
        else:
            member_logits = self._evaluate_members(x)
            for metrics, z in zip(self._member_metrics(), member_logits):
                metrics.update(*medmnist_inputs(z, y, self.task))
            logits = average_logits(member_logits, self._multilabel)
        assert self.val_metrics is not None
        self.val_metrics.update(*medmnist_inputs(logits, y, self.task))
        self.log(
            "val/loss",
            self.loss(logits, y),
            on_epoch=True,
            prog_bar=True,
            batch_size=len(x),
            sync_dist=True,
        )
        # `val/auc` and `val/acc`, computed over the whole epoch (and all processes), then reset
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True)

    @override
    def on_validation_epoch_end(self) -> None:
        """With member selection: log each member's metrics and keep the weights of each one's best epoch."""
        if self.member_val_metrics is None:
            return
        members = self._evaluated_members()
        # only while fitting: a sanity check or a later `Trainer.validate` selects nothing
        selecting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        for k, metrics in enumerate(self._member_metrics()):
            # reduced over processes: every rank takes the same decisions
            values = metrics.compute()
            metrics.reset()
            if self.trainer.sanity_checking:
                continue
            self.log_dict(values, on_epoch=True, sync_dist=True)
            if not selecting:
                continue
            auc = float(values[f"val/member_{k}/auc"])
            if auc > self.member_best_auc[k]:
                self.member_best_auc[k] = auc
                self.member_best_epoch[k] = self.current_epoch
                self._member_best_state[k] = {
                    name: t.detach().to("cpu", copy=True)
                    for name, t in members[k].state_dict().items()
                }
        if selecting:
            best = sum(self.member_best_auc) / len(self.member_best_auc)
            self.log("val/member_best_auc", best, sync_dist=True)

    def load_member_bests(self) -> list[int]:
        """Load each ensemble member's weights of its best validation epoch (member selection).

        Called when training ends. A checkpoint holds the weights of its own epoch and, under
        `MEMBER_BEST_KEY`, each member's best copy: after `MedicalCNN.load_from_checkpoint(path)`, call
        this to evaluate the selected members.

        Returns:
            The epoch of each member's loaded weights (`-1` where a member has none yet and is left as is).

        Raises:
            RuntimeError: Without `ensemble_selection="member"` and `ensemble > 1`.
        """
        if self.member_val_metrics is None:
            raise RuntimeError(
                "load_member_bests() needs ensemble > 1 and ensemble_selection='member', got "
                f"ensemble={self.hparams['ensemble']}, "
                f"ensemble_selection={self.hparams.get('ensemble_selection', 'joint')!r}"
            )
        for member, state in zip(self._evaluated_members(), self._member_best_state):
            if state is not None:
                member.load_state_dict(state)
        return list(self.member_best_epoch)

    @override
    def on_train_end(self) -> None:
        """With member selection: load each member's best weights back."""
        if self.member_val_metrics is not None:
            self.load_member_bests()

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.member_val_metrics is not None:
            checkpoint[MEMBER_BEST_KEY] = {
                "auc": list(self.member_best_auc),
                "epoch": list(self.member_best_epoch),
                "state": list(self._member_best_state),
            }

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(MEMBER_BEST_KEY)
        if saved is not None and self.member_val_metrics is not None:
            self.member_best_auc = list(saved["auc"])
            self.member_best_epoch = list(saved["epoch"])
            self._member_best_state = list(saved["state"])

    def _test_split_names(self) -> tuple[str, ...]:
        return tuple(getattr(self._datamodule(), "test_splits", ("test",)))

    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def on_test_epoch_start(self) -> None:
        hp = self.hparams
        names = self._test_split_names()
        self.test_metrics = nn.ModuleDict(
            {_key(s): medmnist_metric_collection(hp["task"], hp["num_classes"]) for s in names}
        ).to(self.device)
        self.test_losses = nn.ModuleDict({_key(s): MeanMetric() for s in names}).to(self.device)
        self.test_confusion = None
        self._calibration_logits = {"test": [], "val": []}
        self._calibration_targets = {"test": [], "val": []}
        if "test" in names:
            self.test_confusion = medmnist_confusion_matrix(hp["task"], hp["num_classes"]).to(
                self.device
            )

    def test_step(
        self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x, y = batch
        split = self._test_split_names()[dataloader_idx]
        logits = self.evaluate(x)
        preds, target = medmnist_inputs(logits, y, self.task)
        self._split_metrics(split).update(preds, target)
        self._split_loss(split).update(self.loss(logits, y), weight=len(x))
        if split == "test" and self.test_confusion is not None:
            self.test_confusion.update(preds, target)
        if split in self._calibration_logits:
            self._calibration_logits[split].append(logits.detach().float())
            self._calibration_targets[split].append(y.detach().view(-1))

    def _split_metrics(self, split: str) -> MetricCollection:
        return cast(MetricCollection, self.test_metrics[_key(split)])

    def _split_loss(self, split: str) -> MeanMetric:
        return cast(MeanMetric, self.test_losses[_key(split)])

    def on_test_epoch_end(self) -> None:
        results: dict[str, dict[str, float]] = {}
        for split in self._test_split_names():
            values = {k: float(v) for k, v in self._split_metrics(split).compute().items()}
            values["loss"] = float(self._split_loss(split).compute())
            results[split] = values
            self._split_metrics(split).reset()
            self._split_loss(split).reset()
        self.confusion = None
        if self.test_confusion is not None:
            self.confusion = self.test_confusion.compute().cpu()
            self.test_confusion.reset()
        self.results = results
        logged: dict[str, float] = {}
        for split, values in results.items():
            for name, v in values.items():
                logged[f"test/{name}" if split == "test" else f"test/{split}_{name}"] = v
        logged.update(self._calibrate())
        if "test" in results and "train" in results:
            logged["test/gap_auc"] = results["train"]["auc"] - results["test"]["auc"]
            logged["test/gap_acc"] = results["train"]["acc"] - results["test"]["acc"]
            logged["test/gap_loss"] = results["test"]["loss"] - results["train"]["loss"]
        # already reduced over processes by torchmetrics, so the same on each: their mean keeps them
        self.log_dict(logged, add_dataloader_idx=False, sync_dist=True)
        if self.confusion is not None and self.trainer.is_global_zero:
            self._log_confusion()

    def _gathered(self, split: str) -> tuple[Tensor, Tensor]:
        """The logits and targets of a split seen in this test run, from every process."""
        logits = torch.cat(self._calibration_logits.pop(split))
        target = torch.cat(self._calibration_targets.pop(split))
        if self.trainer.world_size > 1:
            logits = cast(Tensor, self.all_gather(logits)).flatten(0, 1)
            target = cast(Tensor, self.all_gather(target)).flatten(0, 1)
        return logits, target

    def _validation_logits(self) -> tuple[Tensor, Tensor]:
        """Validation logits: from the test run's `val` loader, else from `datamodule.val_dataloader()`."""
        if self._calibration_logits.get("val"):
            return self._gathered("val")
        datamodule = self._datamodule()
        if datamodule is None:
            raise RuntimeError("calibration needs the validation split: test with a datamodule")
        zs, ys = [], []
        with torch.no_grad():
            for x, y in datamodule.val_dataloader():
                zs.append(self.evaluate(x.to(self.device)).float())
                ys.append(y.to(self.device).view(-1))
        return torch.cat(zs), torch.cat(ys)

    def _calibrate(self) -> dict[str, float]:
        """Fit the calibrator on the validation logits; the calibrated (and uncalibrated) test metrics.

        Every process fits on the same gathered logits, so all hold the same calibrator.
        """
        if self.calibrator is None or not self._calibration_logits.get("test"):
            self._calibration_logits, self._calibration_targets = {}, {}
            return {}
        test_logits, test_target = self._gathered("test")
        val_logits, val_target = self._validation_logits()
        self._calibration_logits, self._calibration_targets = {}, {}
        self.calibrator.fit(val_logits, val_target)
        calibrated = self.calibrator(test_logits)
        out = {
            "test/nll": float(F.cross_entropy(test_logits, test_target)),
            "test/calibrated_nll": float(F.cross_entropy(calibrated, test_target)),
        }
        for name, value in medmnist_metrics(calibrated, test_target, self.task).items():
            out[f"test/calibrated_{name}"] = value
        if isinstance(self.calibrator, TemperatureScaling):
            out["calibration/temperature"] = float(self.calibrator.temperature)
        else:
            out["calibration/a"] = float(self.calibrator.a)
            out["calibration/b"] = float(self.calibrator.b)
        self.calibrated_results = {
            k.removeprefix("test/calibrated_"): v
            for k, v in out.items()
            if k.startswith("test/calibrated_")
        }
        return out

    def _class_names(self) -> list[str]:
        names = self.hparams["class_names"]
        return list(names) if names else [str(i) for i in range(int(self.hparams["num_classes"]))]

    def _log_confusion(self) -> None:
        from reglight.logging import log_figure, log_table

        from .figures import confusion_matrix_figure

        assert self.confusion is not None
        cm = self.confusion.numpy()
        fig = confusion_matrix_figure(cm, self._class_names())
        log_figure(self, "test/confusion_matrix", fig)
        table = self._confusion_table()
        log_table(self, "test/confusion_matrix_table", table.columns, table.rows)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Per-class scores (softmax, or sigmoid for multi-label) of a batch `x` or `(x, y)`."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = self.evaluate(x)
        if self.calibrator is not None:
            logits = self.calibrator(logits)
        return scores_from_logits(logits, self.task)

    # ------------------------------------------------------------------------------------- optimizer

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if self.net is None:
            raise RuntimeError("the network is built in `setup()`; call fit through a Trainer")
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.net.named_parameters():
            if p.requires_grad:
                (no_decay if _no_decay(name, p) else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": hp["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        opt: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=True)
        elif hp["optimizer"] == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp["lr"])
        else:
            opt = torch.optim.Adam(groups, lr=hp["lr"])
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if hp["lr_schedule"] == "constant" or not max_epochs or max_epochs < 1:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ---------------------------------------------------------------------------------------- report

    def _confusion_table(self) -> Any:
        from reglight.logging import Table

        assert self.confusion is not None
        names = self._class_names()
        cm = self.confusion.tolist()
        if self.confusion.ndim == 3:
            rows = [[n, *m[0], *m[1]] for n, m in zip(names, cm)]
            return Table(
                "Confusion matrices per label (test)", ["label", "TN", "FP", "FN", "TP"], rows
            )
        rows = [[f"true {n}", *r] for n, r in zip(names, cm)]
        return Table("Confusion matrix (test)", ["", *[f"pred {n}" for n in names]], rows)

    def report(self) -> list[Any]:
        """The final metrics of the last test run as printable tables.

        Returns:
            A list of [Table][reglight.logging.Table]: loss/AUC/ACC per split with the generalization gap
            (row `gap`: test − train for the loss, train − test for AUC and ACC), and the test confusion
            matrix. Empty before `Trainer.test`.
        """
        from reglight.logging import Table

        if not self.results:
            return []
        rows: list[list[Any]] = [
            [split, v["loss"], v["auc"], v["acc"]] for split, v in self.results.items()
        ]
        if "train" in self.results and "test" in self.results:
            tr, te = self.results["train"], self.results["test"]
            rows.append(
                ["gap", te["loss"] - tr["loss"], tr["auc"] - te["auc"], tr["acc"] - te["acc"]]
            )
        if self.calibrated_results:
            c = self.calibrated_results
            rows.append(
                [f"test, {self.hparams['calibration']} (NLL)", c["nll"], c["auc"], c["acc"]]
            )
        tables = [Table("MedMNIST metrics", ["split", "loss", "AUC", "ACC"], rows)]
        if self.confusion is not None:
            tables.append(self._confusion_table())
        return tables
