r"""`SparseLinearModel`: lasso / elastic-net regression and classification as a LightningModule.

See the package docstring of `reglight.recipes.lasso` for the objective and the scikit-learn
mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError, Metric, R2Score
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
)

from reglight._validation import (
    check_choice,
    check_in_range,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from reglight.callbacks.penalty import PenaltyHook

from .figures import CVCurve, path_figure
from .objective import data_loss, penalty_strength, penalty_value, sklearn_penalty
from .refit import refit_least_squares, refit_logistic
from .scaling import dataset_tensors, lipschitz_constant, standardization

__all__ = ["SelectedFeature", "SparseLinearModel"]

_TASKS = ("auto", "regression", "binary", "multiclass")
_CHECKPOINT_KEY = "sparse_linear_model"


@dataclass(frozen=True)
class SelectedFeature:
    """A feature kept by the penalty, with its coefficients (one per model output).

    Attributes:
        name: Feature name.
        index: Column index in the data.
        coef: Coefficients on the standardized feature.
        coef_original: Coefficients in the feature's original units (``coef / scale``).
        refit: Relaxed-lasso refit coefficients (standardized).
        refit_original: Refit coefficients in original units.
    """

    name: str
    index: int
    coef: tuple[float, ...]
    coef_original: tuple[float, ...]
    refit: tuple[float, ...]
    refit_original: tuple[float, ...]


class _Evaluator(nn.Module):
    """The metrics of one split: MSE and R² (regression), log-loss, accuracy and AUROC (classes)."""

    def __init__(self, task: str, n_classes: int) -> None:
        super().__init__()
        self.task = task
        metrics: dict[str, Metric]
        if task == "regression":
            metrics = {"mse": MeanSquaredError(), "r2": R2Score()}
        elif task == "binary":
            metrics = {"loss": MeanMetric(), "acc": BinaryAccuracy(), "auroc": BinaryAUROC()}
        else:
            metrics = {
                "loss": MeanMetric(),
                "acc": MulticlassAccuracy(n_classes, average="micro"),
                "auroc": MulticlassAUROC(n_classes),
            }
        self.metrics = nn.ModuleDict(metrics)

    def update(self, output: Tensor, target: Tensor) -> None:
        metrics = cast(dict[str, Metric], self.metrics)
        if self.task == "regression":
            target = target.to(output.dtype)
            metrics["mse"].update(output, target)
            metrics["r2"].update(output, target)
            return
        if self.task == "binary":
            loss = F.binary_cross_entropy_with_logits(
                output, target.to(output.dtype), reduction="none"
            )
            scores = torch.sigmoid(output)
        else:
            loss = F.cross_entropy(output, target.long(), reduction="none")
            scores = torch.softmax(output, dim=-1)
        metrics["loss"].update(loss)
        metrics["acc"].update(scores, target.long())
        metrics["auroc"].update(scores, target.long())

    def compute(self) -> dict[str, float]:
        metrics = cast(dict[str, Metric], self.metrics)
        values = {name: float(m.compute()) for name, m in metrics.items()}
        for m in metrics.values():
            m.reset()
        return values


class SparseLinearModel(pl.LightningModule):
    r"""A sparse linear model trained by minibatch proximal gradient steps through `PenaltyHook`.

    Minimizes, over the features standardized on the training split ($z = (x-\mu)/s$),

    $$
    F(W, b) = \frac{1}{n}\sum_{i=1}^n \ell(y_i, W z_i + b)
        + \alpha\rho\,\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2,
    $$

    $\rho$ = ``l1_ratio``, with an unpenalized intercept $b$ and the loss $\ell$ of the task:
    $\tfrac12(y-\eta)^2$ (regression: exactly scikit-learn's ``Lasso(alpha)`` for $\rho = 1$ and
    ``ElasticNet(alpha, l1_ratio)``, whose objective is
    $\frac{1}{2n}\lVert y-Xw\rVert^2 + \alpha\rho\lVert w\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert w\rVert^2$),
    the logistic loss (two classes, one logit) or the softmax cross-entropy (multinomial, one row
    of $W$ per class; both scikit-learn's ``LogisticRegression(C=1/(nα), l1_ratio=ρ)``).

    **Training.** An SGD step on the data term followed by the penalty's proximal operator with
    the same step ([`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] in ``"proximal"`` mode,
    returned by ``configure_callbacks`` so a Trainer needs nothing else; its penalty is
    [`sklearn_penalty`][reglight.recipes.lasso.sklearn_penalty]`(α, ρ)`) is one ISTA step. With
    ``gradient="full"`` the gradients of the minibatches are summed over the epoch and one exact
    proximal step is taken per epoch (memory bounded by the batch size; under DDP each process sums
    its shard and the gradients are averaged), accelerated by FISTA's extrapolation with adaptive
    restart (Beck & Teboulle 2009; O'Donoghue & Candès 2015) when ``accelerated``; the step size is
    $1/L$ (see `reglight.recipes.lasso.scaling`), and training stops when a step changes no
    coefficient by more than ``tol`` times the largest one. This converges to the minimizer of
    $F$. ``gradient="stochastic"`` takes one proximal SGD step per minibatch (stochastic
    ISTA: cheaper steps, slower convergence; see ``lr_decay``).

    **Set-up** (``setup()``, from ``trainer.datamodule``): the training split is read once (float64)
    to compute the standardization (buffers ``x_mean`` / ``x_scale``), the step size, and
    ``α`` by K-fold cross-validation when ``alpha`` is ``None``
    ([`enet_cv`][reglight.linear.enet_cv] / [`logistic_cv`][reglight.linear.logistic_cv] on
    the standardized training split; rule ``alpha_rule``). The layer is built there, so any
    datamodule with ``train_dataset`` (``(x, y)`` pairs) and ``task`` works
    ([`TabularDataModule`][reglight.recipes.tabular.TabularDataModule] also gives
    ``feature_names`` and ``n_classes``).

    **After training**: [`selected_features`][reglight.recipes.lasso.SparseLinearModel.selected_features],
    [`coefficients`][reglight.recipes.lasso.SparseLinearModel.coefficients] (standardized or in
    original units), the relaxed-lasso refit on the selected features (`reglight.recipes.lasso.refit`)
    and test metrics of both (``test/r2``, ``test/mse``, ``test/r2_refit``, ...; classification
    ``test/acc``, ``test/auroc``, ``test/loss``), the coefficient table and the regularization-path
    figure logged through [`reglight.logging`][reglight.logging], and
    [`report`][reglight.recipes.lasso.SparseLinearModel.report] for ``reglight run``.

    Args:
        alpha: scikit-learn's ``alpha`` (>= 0) on the standardized features; ``None`` to choose it
            by cross-validation on the training split.
        l1_ratio: scikit-learn's ``l1_ratio`` $\rho \in (0, 1]$: 1 is the lasso, less the elastic net.
        task: ``"auto"`` (the datamodule's), ``"regression"``, ``"binary"`` or ``"multiclass"``.
        alpha_rule: With ``alpha=None``: ``"min"`` (lowest CV error) or ``"1se"`` (sparsest model
            within one standard error of it).
        cv_folds: Number of cross-validation folds.
        n_alphas: Size of the ``α`` grid of the cross-validation and of the path figure.
        eps: ``α_min / α_max`` of that grid.
        gradient: ``"full"`` (one exact proximal step per epoch) or ``"stochastic"`` (one per
            minibatch).
        accelerated: FISTA extrapolation with restart (``gradient="full"`` only).
        lr: Step size; ``None`` for $1/L$ from the standardized training data.
        lr_decay: ``gradient="stochastic"`` only: the step of epoch $e$ is
            ``lr / sqrt(1 + e)``, so the iterates converge (a constant step leaves a noise floor).
        tol: Stop when no coefficient changes by more than ``tol`` times the largest coefficient in
            one step (``gradient="full"``; 0 never stops early).
        refit_l2: Ridge strength $\gamma$ of the refit; ``None`` for 0 (regression) or ``1e-3``
            (classification, which keeps separable classes finite).
        path_figure: Compute and log the regularization path at the end of testing.
        num_threads: torch's intra-op threads while this model fits or tests (restored afterwards);
            ``None`` leaves them alone. One thread suits small tabular data, where synchronizing
            threads costs more than the arithmetic of a step.

    Raises:
        ValueError: if an argument is out of range.

    Example:
        >>> import lightning.pytorch as pl
        >>> from reglight.recipes.tabular import TabularDataModule
        >>> data = TabularDataModule("diabetes", batch_size=128)
        >>> model = SparseLinearModel(alpha=2.0, path_figure=False)
        >>> trainer = pl.Trainer(max_epochs=300, logger=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, enable_checkpointing=False)
        >>> trainer.fit(model, datamodule=data)
        >>> top = model.selected_features()[:3]
        >>> ", ".join(f.name for f in top)
        'bmi, s5, bp'
    """

    x_mean: Tensor
    x_scale: Tensor
    refit_weight: Tensor
    refit_bias: Tensor
    val_metrics: _Evaluator
    test_metrics: _Evaluator
    test_metrics_refit: _Evaluator

    def __init__(
        self,
        alpha: float | None = None,
        l1_ratio: float = 1.0,
        task: str = "auto",
        alpha_rule: str = "min",
        cv_folds: int = 5,
        n_alphas: int = 100,
        eps: float = 1e-3,
        gradient: str = "full",
        accelerated: bool = True,
        lr: float | None = None,
        lr_decay: bool = True,
        tol: float = 1e-6,
        refit_l2: float | None = None,
        path_figure: bool = True,
        num_threads: int | None = 1,
    ) -> None:
        super().__init__()
        if alpha is not None:
            check_nonnegative("alpha", alpha)
        check_in_range("l1_ratio", l1_ratio, 0.0, 1.0, low_inclusive=False)
        check_choice("task", task, _TASKS)
        check_choice("alpha_rule", alpha_rule, ("min", "1se"))
        check_positive_int("cv_folds", cv_folds, minimum=2)
        check_positive_int("n_alphas", n_alphas, minimum=2)
        check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_choice("gradient", gradient, ("full", "stochastic"))
        if lr is not None:
            check_positive("lr", lr)
        check_nonnegative("tol", tol)
        if refit_l2 is not None:
            check_nonnegative("refit_l2", refit_l2)
        if num_threads is not None:
            check_positive_int("num_threads", num_threads)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.penalty_hook = PenaltyHook(
            sklearn_penalty(alpha or 0.0, l1_ratio),
            mode="proximal",
            include="linear.weight",
            name="penalty",
        )
        self.linear: nn.Linear | None = None
        self.alpha_: float | None = alpha
        self.lipschitz: float | None = None
        self.cv_curve: CVCurve | None = None
        self.feature_names: list[str] = []
        self.class_names: list[str] = []
        self._task: str | None = None
        self.refit_done = False
        self.test_results: dict[str, tuple[float, float]] = {}
        self.converged_epoch: int | None = None
        self._reset_accumulation()
        self._fista_x: list[Tensor] | None = None
        self._fista_y: list[Tensor] | None = None
        self._fista_t = 1.0
        self._saved_threads: int | None = None

    # ------------------------------------------------------------------------------- properties

    @property
    def task(self) -> str:
        """The resolved task: ``"regression"``, ``"binary"`` or ``"multiclass"``."""
        if self._task is None:
            raise RuntimeError("the model is not built yet: fit it through a Trainer first")
        return self._task

    @property
    def n_features(self) -> int:
        """Number of input features (after building)."""
        return self._layer().in_features

    @property
    def n_outputs(self) -> int:
        """1 for regression and binary classification, else the number of classes."""
        return self._layer().out_features

    def _layer(self) -> nn.Linear:
        if self.linear is None:
            raise RuntimeError("the model is not built yet: fit it through a Trainer first")
        return self.linear

    # -------------------------------------------------------------------------------- building

    def setup(self, stage: str) -> None:
        """Build the layer and the training statistics from ``trainer.datamodule`` (once)."""
        threads = self.hparams["num_threads"]
        if threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
        if self.linear is not None:
            return
        datamodule = self._datamodule()
        if datamodule is None or getattr(datamodule, "train_dataset", None) is None:
            raise RuntimeError(
                "SparseLinearModel builds itself from `trainer.datamodule`: pass a datamodule "
                "with a `train_dataset` of (x, y) pairs and a `task` (e.g. TabularDataModule)"
            )
        self.build(datamodule)

    def teardown(self, stage: str) -> None:
        """Restore torch's thread count."""
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def build(self, datamodule: Any) -> None:
        """Fit the standardization, choose ``α`` (if ``None``) and create the layer.

        Args:
            datamodule: An object with ``train_dataset`` (``(x, y)`` pairs) and ``task``
                (``"regression"``, ``"binary"``, ``"multiclass"``); optionally ``feature_names``,
                ``n_classes`` and ``class_names``.

        Raises:
            ValueError: if the model's ``task`` does not fit the data.
        """
        x, y = dataset_tensors(datamodule.train_dataset)
        task, n_classes = self._resolve_task(datamodule, y)
        names = list(getattr(datamodule, "feature_names", None) or [])
        if len(names) != x.shape[1]:
            names = [f"x{j}" for j in range(x.shape[1])]
        classes = list(getattr(datamodule, "class_names", None) or [])
        if task != "regression" and len(classes) != n_classes:
            classes = [str(c) for c in range(n_classes)]
        mean, scale = standardization(x)
        z = (x - mean) / scale
        n_outputs = n_classes if task == "multiclass" else 1
        self._init_modules(x.shape[1], n_outputs, task, names, classes)
        self.x_mean.copy_(mean)
        self.x_scale.copy_(scale)
        layer = self._layer()
        with torch.no_grad():
            if task == "regression":
                layer.bias.fill_(float(y.double().mean()))
            else:
                counts = torch.bincount(y.long(), minlength=n_classes).double().clamp_min(0.5)
                logp = torch.log(counts / counts.sum())
                prior = logp[1:] - logp[:1] if task == "binary" else logp - logp.mean()
                layer.bias.copy_(prior.to(layer.bias))
        self.lipschitz = lipschitz_constant(z, task)
        alpha = self.hparams["alpha"]
        if alpha is None:
            alpha = self._cross_validate(z, y)
        self.set_alpha(alpha)

    def _resolve_task(self, datamodule: Any, y: Tensor) -> tuple[str, int]:
        wanted = self.hparams["task"]
        data_task = getattr(datamodule, "task", None)
        task = data_task if wanted == "auto" else wanted
        if task not in ("regression", "binary", "multiclass"):
            raise ValueError(
                f"`task` is 'auto' but the datamodule's task is {data_task!r}; set `task` to "
                "'regression', 'binary' or 'multiclass'"
            )
        if task == "regression":
            return task, 0
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise ValueError(f"`task` {task!r} needs integer class codes, the targets are real")
        n_classes = int(getattr(datamodule, "n_classes", 0) or int(y.max()) + 1)
        if task == "binary" and n_classes != 2:
            raise ValueError(f"`task` 'binary' needs 2 classes, the data has {n_classes}")
        if n_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, the data has {n_classes}")
        return task, n_classes

    def _init_modules(
        self, n_features: int, n_outputs: int, task: str, names: list[str], classes: list[str]
    ) -> None:
        self._task = task
        self.feature_names = names
        self.class_names = classes
        self.linear = nn.Linear(n_features, n_outputs)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        # float64 whatever the precision: standardizing large-offset features in float32 loses digits
        self.register_buffer("x_mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("x_scale", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("refit_weight", torch.zeros(n_outputs, n_features))
        self.register_buffer("refit_bias", torch.zeros(n_outputs))
        n_classes = max(len(classes), 2)
        self.val_metrics = _Evaluator(task, n_classes)
        self.test_metrics = _Evaluator(task, n_classes)
        self.test_metrics_refit = _Evaluator(task, n_classes)

    def _cross_validate(self, z: Tensor, y: Tensor) -> float:
        from reglight.linear import enet_cv, logistic_cv

        hp = self.hparams
        zn = z.numpy()
        if self.task == "regression":
            result = enet_cv(
                zn,
                y.double().numpy(),
                l1_ratio=hp["l1_ratio"],
                n_alphas=hp["n_alphas"],
                eps=hp["eps"],
                cv=hp["cv_folds"],
                rule=hp["alpha_rule"],
            )
            label = "MSE"
        else:
            result = logistic_cv(
                zn,
                y.long().numpy(),
                l1_ratio=hp["l1_ratio"],
                n_alphas=hp["n_alphas"],
                eps=hp["eps"],
                cv=hp["cv_folds"],
                rule=hp["alpha_rule"],
            )
            label = "log-loss"
        self.cv_curve = CVCurve(
            np.asarray(result.alphas[0]),
            np.asarray(result.mean[0]),
            np.asarray(result.se[0]),
            label,
        )
        alpha = float(result.alpha)
        if self._trainer is not None:  # every process trains with rank 0's choice
            alpha = float(self.trainer.strategy.broadcast(alpha, src=0))
        return alpha

    def set_alpha(self, alpha: float) -> None:
        """Set ``α`` (scikit-learn's scaling); the penalty hook's strength follows.

        Args:
            alpha: The new ``α >= 0``.
        """
        self.alpha_ = check_nonnegative("alpha", alpha)
        strength, _ = penalty_strength(self.alpha_, self.hparams["l1_ratio"])
        self.penalty_hook.penalty.strength = strength

    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    # --------------------------------------------------------------------------------- forward

    def standardize(self, x: Tensor) -> Tensor:
        """``(x - x_mean) / x_scale`` with the training split's statistics.

        Args:
            x: ``(n, p)`` raw features.

        Returns:
            The standardized features (computed in the statistics' dtype, float64 by default),
            in the dtype of the model's weights.
        """
        z = (x.to(self.x_mean.dtype) - self.x_mean) / self.x_scale
        return z.to(self._layer().weight.dtype)

    def _squeeze(self, out: Tensor) -> Tensor:
        return out.squeeze(-1) if out.shape[-1] == 1 and self.task != "multiclass" else out

    def forward(self, x: Tensor) -> Tensor:
        """Predictions (regression) or logits: ``(n,)``, or ``(n, K)`` for the multinomial model.

        Args:
            x: ``(n, p)`` raw (unstandardized) features.

        Returns:
            The model output.
        """
        return self._squeeze(self._layer()(self.standardize(x)))

    def forward_refit(self, x: Tensor) -> Tensor:
        """The output of the relaxed-lasso refit (same shapes as :meth:`forward`).

        Args:
            x: ``(n, p)`` raw features.

        Returns:
            The refit model's output.
        """
        z = self.standardize(x)
        return self._squeeze(z @ self.refit_weight.T + self.refit_bias)

    # -------------------------------------------------------------------------------- training

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = self.hparams["lr"]
        if lr is None:
            if self.lipschitz is None:
                raise RuntimeError("the step size needs the training data: build the model first")
            lr = 1.0 / self.lipschitz
        return torch.optim.SGD(self._layer().parameters(), lr=lr)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The proximal [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] of the penalty (once per Trainer)."""
        if any(cb is self.penalty_hook for cb in self.trainer.callbacks):  # type: ignore[attr-defined]
            return []
        return [self.penalty_hook]

    def _reset_accumulation(self) -> None:
        self._seen = 0
        self._loss_sum: Tensor | float = 0.0

    def _params(self) -> list[Tensor]:
        layer = self._layer()
        return [layer.weight, layer.bias]

    def on_train_start(self) -> None:
        if self.hparams["gradient"] == "full" and not math.isfinite(
            float(self.trainer.num_training_batches)
        ):
            raise RuntimeError(
                "gradient='full' needs a train dataloader with a length (it takes one step per "
                "epoch); use gradient='stochastic' for iterable datasets"
            )
        self._reset_accumulation()
        self._fista_x = [p.detach().clone() for p in self._params()]
        self._fista_y = None
        self._fista_t = 1.0
        self.converged_epoch = None

    def on_train_epoch_start(self) -> None:
        if self.hparams["gradient"] == "stochastic" and self.hparams["lr_decay"]:
            optimizer = cast(Any, self.optimizers()).optimizer
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] / math.sqrt(1.0 + self.current_epoch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        optimizer = cast(Any, self.optimizers())
        if self.hparams["gradient"] == "stochastic":
            loss = data_loss(self(x), y, self.task)
            self.manual_backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(x))
            return
        if self._seen == 0 and self._fista_y is not None:
            with torch.no_grad():  # the gradient of this epoch is taken at the extrapolated point
                torch._foreach_copy_(self._params(), self._fista_y)
        loss_sum = data_loss(self(x), y, self.task, reduction="sum")
        self.manual_backward(loss_sum)
        self._seen += len(x)
        self._loss_sum = self._loss_sum + loss_sum.detach()
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._full_step(optimizer)

    def _full_step(self, optimizer: Any) -> None:
        """One (F)ISTA step with the gradient summed over the epoch."""
        params = self._params()
        grads = [p.grad for p in params if p.grad is not None]
        torch._foreach_div_(grads, float(self._seen))
        self.log(
            "train/loss",
            cast(Tensor, self._loss_sum) / self._seen,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        optimizer.step()  # SGD step, then the PenaltyHook's proximal step
        optimizer.zero_grad()
        self._reset_accumulation()
        with torch.no_grad():
            x_old = self._fista_x or [p.detach().clone() for p in params]
            x_new = [p.detach().clone() for p in params]
            if self.hparams["accelerated"]:
                y_old = self._fista_y or x_old
                # gradient-based restart: momentum is dropped when it points uphill
                uphill = sum(
                    float(((yo - xn) * (xn - xo)).sum()) for yo, xn, xo in zip(y_old, x_new, x_old)
                )
                t = 1.0 if uphill > 0 else self._fista_t
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
                beta = (t - 1.0) / t_next
                self._fista_y = [xn + beta * (xn - xo) for xn, xo in zip(x_new, x_old)]
                self._fista_t = t_next
            change = float((x_new[0] - x_old[0]).abs().max())
            size = float(x_new[0].abs().max())
            self._fista_x = x_new
        tol = self.hparams["tol"]
        if tol > 0 and change <= tol * size:
            self.converged_epoch = self.current_epoch
            self.trainer.should_stop = True

    def on_fit_end(self) -> None:
        self.refit()

    # ------------------------------------------------------------------------------ evaluation

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self(x), y)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.val_metrics.compute().items():
            self.log(f"val/{name}", value, prog_bar=name in ("r2", "acc"))

    def on_test_start(self) -> None:
        if not self.refit_done:
            self.refit()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(self(x), y)
        self.test_metrics_refit.update(self.forward_refit(x), y)

    def on_test_epoch_end(self) -> None:
        lasso = self.test_metrics.compute()
        refit = self.test_metrics_refit.compute()
        self.test_results = {k: (lasso[k], refit[k]) for k in lasso}
        for name, (a, b) in self.test_results.items():
            self.log(f"test/{name}", a)
            self.log(f"test/{name}_refit", b)
        self.log("test/n_selected", float(len(self.selected_indices())))
        self.log("test/alpha", float(self.alpha_ or 0.0))
        if self.trainer.is_global_zero:
            self._log_artifacts()

    # --------------------------------------------------------------------------- coefficients

    def coefficients(self, original_units: bool = False) -> tuple[Tensor, Tensor]:
        r"""The fitted ``(W, b)`` as float64 CPU tensors of shapes ``(n_outputs, p)`` and ``(n_outputs,)``.

        Args:
            original_units: Express them for the raw features: $W/s$ and $b - (W/s)\mu$, so
                that ``x @ W.T + b`` equals the model's output on raw ``x``.

        Returns:
            ``(W, b)``.
        """
        layer = self._layer()
        return self._in_units(layer.weight, layer.bias, original_units)

    def refit_coefficients(self, original_units: bool = False) -> tuple[Tensor, Tensor]:
        """The relaxed-lasso refit's ``(W, b)`` (zeros outside the selected features).

        Args:
            original_units: As in :meth:`coefficients`.

        Returns:
            ``(W, b)``.
        """
        return self._in_units(self.refit_weight, self.refit_bias, original_units)

    def _in_units(self, weight: Tensor, bias: Tensor, original: bool) -> tuple[Tensor, Tensor]:
        w = weight.detach().to("cpu", torch.float64).clone()
        b = bias.detach().to("cpu", torch.float64).clone()
        if original:
            w = w / self.x_scale.detach().to("cpu", torch.float64)
            b = b - w @ self.x_mean.detach().to("cpu", torch.float64)
        return w, b

    def selected_indices(self) -> list[int]:
        """Indices of the features with a nonzero coefficient (for any output)."""
        w, _ = self.coefficients()
        return torch.nonzero((w != 0).any(0)).flatten().tolist()

    def selected_features(self) -> list[SelectedFeature]:
        """The selected features, largest standardized coefficient first.

        Returns:
            A list of [`SelectedFeature`][reglight.recipes.lasso.SelectedFeature].
        """
        w, _ = self.coefficients()
        wo, _ = self.coefficients(original_units=True)
        r, _ = self.refit_coefficients()
        ro, _ = self.refit_coefficients(original_units=True)
        idx = self.selected_indices()
        idx.sort(key=lambda j: -float(w[:, j].abs().max()))
        return [
            SelectedFeature(
                name=self.feature_names[j],
                index=j,
                coef=tuple(w[:, j].tolist()),
                coef_original=tuple(wo[:, j].tolist()),
                refit=tuple(r[:, j].tolist()),
                refit_original=tuple(ro[:, j].tolist()),
            )
            for j in idx
        ]

    @torch.no_grad()
    def objective(self, x: Tensor, y: Tensor) -> float:
        r"""The penalized objective $F(W, b)$ on raw data (standardized with the training statistics).

        Args:
            x: ``(n, p)`` raw features.
            y: ``(n,)`` targets or class codes.

        Returns:
            $F$ in float64.
        """
        z = (x.to("cpu", torch.float64) - self.x_mean.cpu().double()) / self.x_scale.cpu().double()
        w, b = self.coefficients()
        out = self._squeeze(z @ w.T + b)
        loss = data_loss(out, y.cpu(), self.task)
        return float(loss + penalty_value(w, float(self.alpha_ or 0.0), self.hparams["l1_ratio"]))

    # ---------------------------------------------------------------------------------- refit

    def _ridge(self) -> float:
        value = self.hparams["refit_l2"]
        if value is None:
            return 0.0 if self.task == "regression" else 1e-3
        return float(value)

    @torch.no_grad()
    def refit(self, dataset: Any = None) -> None:
        """Refit the selected features without the lasso's shrinkage (relaxed lasso).

        Every process computes the same refit from the whole training split (float64).

        Args:
            dataset: ``(x, y)`` training pairs; default: ``trainer.datamodule.train_dataset``.
        """
        if dataset is None:
            datamodule = self._datamodule()
            dataset = getattr(datamodule, "train_dataset", None)
            if dataset is None:
                rank_zero_warn("SparseLinearModel: no training data for the refit; skipped")
                return
        x, y = dataset_tensors(dataset)
        z = (x - self.x_mean.cpu().double()) / self.x_scale.cpu().double()
        idx = torch.tensor(self.selected_indices(), dtype=torch.long)
        zs = z[:, idx]
        weight = torch.zeros(self.n_outputs, self.n_features, dtype=torch.float64)
        if self.task == "regression":
            w, b = refit_least_squares(zs, y, self._ridge())
            weight[0, idx] = w
            bias = b.reshape(1)
        else:
            w0, b0 = self.coefficients()
            with torch.enable_grad():
                w, bias = refit_logistic(zs, y, self.n_outputs, self._ridge(), (w0[:, idx], b0))
            weight[:, idx] = w
        self.refit_weight.copy_(weight.to(self.refit_weight))
        self.refit_bias.copy_(bias.to(self.refit_bias))
        self.refit_done = True

    # -------------------------------------------------------------------------------- report

    def _output_labels(self) -> list[str]:
        return list(self.class_names) if self.task == "multiclass" else [""]

    def coefficient_table(self, selected_only: bool = True) -> Any:
        """The coefficients as a ``reglight.logging.Table`` (standardized, original units, refit).

        Args:
            selected_only: Only the selected features (largest first); else every feature in order.

        Returns:
            A ``reglight.logging.Table``.
        """
        from reglight.logging import Table

        columns = ["feature", "coef (std)", "coef (orig)", "refit (std)", "refit (orig)"]
        multi = self.task == "multiclass"
        if multi:
            columns.insert(1, "class")
        if selected_only:
            items = self.selected_features()
        else:
            w, _ = self.coefficients()
            wo, _ = self.coefficients(original_units=True)
            r, _ = self.refit_coefficients()
            ro, _ = self.refit_coefficients(original_units=True)
            items = [
                SelectedFeature(
                    name,
                    j,
                    tuple(w[:, j].tolist()),
                    tuple(wo[:, j].tolist()),
                    tuple(r[:, j].tolist()),
                    tuple(ro[:, j].tolist()),
                )
                for j, name in enumerate(self.feature_names)
            ]
        rows: list[list[Any]] = []
        for f in items:
            for k, label in enumerate(self._output_labels()):
                cells = [f.coef[k], f.coef_original[k], f.refit[k], f.refit_original[k]]
                rows.append([f.name, label, *cells] if multi else [f.name, *cells])
        n_sel = len(self.selected_indices())
        how = "" if self.hparams["alpha"] is not None else f", {self.hparams['alpha_rule']} CV rule"
        title = (
            f"Selected features: {n_sel} of {self.n_features} "
            f"(alpha={float(self.alpha_ or 0.0):.4g}{how}, l1_ratio={self.hparams['l1_ratio']:g})"
        )
        return Table(title if selected_only else "Coefficients", columns, rows)

    def report(self) -> list[Any]:
        """Printable tables: the selected features, the test metrics, support recovery (synthetic).

        Returns:
            A list of ``reglight.logging.Table``.
        """
        from reglight.logging import Table

        if self.linear is None:
            return []
        tables = [self.coefficient_table()]
        if self.test_results:
            rows = [[f"test/{k}", a, b] for k, (a, b) in self.test_results.items()]
            tables.append(Table("Test metrics", ["metric", "lasso", "relaxed refit"], rows))
        truth = getattr(self._datamodule(), "true_coef", None)
        if truth is not None and len(truth) == self.n_features:
            true_set = {int(j) for j in np.flatnonzero(np.asarray(truth))}
            chosen = set(self.selected_indices())
            rows = [
                ["informative features", len(true_set)],
                ["selected", len(chosen)],
                ["true positives", len(chosen & true_set)],
                ["false positives", len(chosen - true_set)],
                ["false negatives", len(true_set - chosen)],
            ]
            tables.append(Table("Support recovery (synthetic truth)", ["", "count"], rows))
        return tables

    def regularization_path(self) -> tuple[np.ndarray, np.ndarray]:
        """The path on the standardized training split, from the full-batch solvers of `reglight.linear`.

        Returns:
            ``(alphas, coefs)`` with ``coefs`` of shape ``(n_features, n_alphas)`` (for the
            multinomial model: each feature's Euclidean norm over the classes).
        """
        from reglight.linear import enet_path, logistic_path

        hp = self.hparams
        datamodule = self._datamodule()
        x, y = dataset_tensors(datamodule.train_dataset)
        z = ((x - self.x_mean.cpu().double()) / self.x_scale.cpu().double()).numpy()
        if self.task == "regression":
            yn = y.double().numpy()
            alphas, coefs = enet_path(
                z, yn - yn.mean(), l1_ratio=hp["l1_ratio"], n_alphas=hp["n_alphas"], eps=hp["eps"]
            )
        else:
            alphas, coefs, _ = logistic_path(
                z, y.long().numpy(), l1_ratio=hp["l1_ratio"], n_alphas=hp["n_alphas"], eps=hp["eps"]
            )
            coefs = np.asarray(coefs)
            if coefs.ndim == 3:
                coefs = np.linalg.norm(coefs, axis=0)
        return np.asarray(alphas), np.asarray(coefs)

    def _log_artifacts(self) -> None:
        from reglight.logging import log_figure, log_table

        table = self.coefficient_table(selected_only=False)
        log_table(self, "lasso/coefficients", table.columns, table.rows)
        if not self.hparams["path_figure"] or not self.trainer.loggers:
            return
        alphas, coefs = self.regularization_path()
        multi = self.task == "multiclass"
        fig = path_figure(
            alphas,
            coefs,
            self.feature_names,
            float(self.alpha_ or alphas[-1]),
            cv=self.cv_curve,
            title=f"{'Lasso' if self.hparams['l1_ratio'] == 1 else 'Elastic-net'} path ({self.task})",
            ylabel="coefficient norm over classes" if multi else "coefficient (standardized)",
        )
        log_figure(self, "lasso/path", fig)

    # -------------------------------------------------------------------------- checkpointing

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_CHECKPOINT_KEY] = {
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "task": self.task,
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "alpha": self.alpha_,
            "lipschitz": self.lipschitz,
            "refit_done": self.refit_done,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(_CHECKPOINT_KEY)
        if meta is None or self.linear is not None:
            return
        self._init_modules(
            meta["n_features"],
            meta["n_outputs"],
            meta["task"],
            list(meta["feature_names"]),
            list(meta["class_names"]),
        )
        saved = checkpoint.get("state_dict", {}).get("linear.weight")
        if saved is not None:  # the saved precision (e.g. a float64 fit)
            self._layer().to(saved.dtype)
            self.refit_weight = self.refit_weight.to(saved.dtype)
            self.refit_bias = self.refit_bias.to(saved.dtype)
        self.lipschitz = meta["lipschitz"]
        self.refit_done = bool(meta["refit_done"])
        if meta["alpha"] is not None:
            self.set_alpha(float(meta["alpha"]))
