r"""`SparseLinearModel`: lasso / elastic-net regression and classification as a LightningModule.

See the package docstring of `reglight.recipes.lasso` for the objective and the scikit-learn
mapping. The module wires the recipe's pieces: the full-batch solver
(`reglight.recipes.lasso.solver`), the cross-validation and path (`reglight.recipes.lasso.cv`), the
refit (`reglight.recipes.lasso.refit`), the metrics (`reglight.recipes.lasso.metrics`) and the
report (`reglight.recipes.lasso.report`).
"""

from __future__ import annotations

import math
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MetricCollection
from typing_extensions import override

from reglight._threads import check_n_threads
from reglight._validation import (
    check_choice,
    check_in_range,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from reglight.callbacks.penalty import PenaltyHook
from reglight.linear import ConvergenceWarning
from reglight.penalties import ElasticNet

from .cv import cross_validate_alpha, regularization_path
from .figures import CVCurve, path_figure
from .metrics import metric_collection, metric_target
from .objective import data_loss
from .refit import relaxed_refit
from .report import (
    Convergence,
    SelectedFeature,
    coefficient_table,
    convergence_table,
    feature_rows,
    metrics_table,
    support_recovery_table,
)
from .scaling import dataset_tensors, lipschitz_constant, standardization
from .solver import FullBatchProximalGradient
from .threads import with_model_threads

__all__ = ["SparseLinearModel"]

_TASKS = ("auto", "regression", "binary", "multiclass")
_CHECKPOINT_KEY = "sparse_linear_model"


class SparseLinearModel(pl.LightningModule):
    r"""A sparse linear model trained by minibatch proximal gradient steps through `PenaltyHook`.

    Minimizes, over the features standardized on the training split ($z = (x-\mu)/s$),

    $$
    F(W, b) = \frac{1}{n}\sum_{i=1}^n \ell(y_i, W z_i + b)
        + \alpha\rho\,\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2,
    $$

    $\rho$ = `l1_ratio`, with an unpenalized intercept $b$ and the loss $\ell$ of the task:
    $\tfrac12(y-\eta)^2$ (regression: exactly scikit-learn's `Lasso(alpha)` for $\rho = 1$ and
    `ElasticNet(alpha, l1_ratio)`, whose objective is
    $\frac{1}{2n}\lVert y-Xw\rVert^2 + \alpha\rho\lVert w\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert w\rVert^2$),
    the logistic loss (two classes, one logit) or the softmax cross-entropy (multinomial, one row
    of $W$ per class; both scikit-learn's `LogisticRegression(C=1/(nα), l1_ratio=ρ)`).

    **Training.** An SGD step on the data term followed by the penalty's proximal operator with
    the same step ([`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] with `method="proximal"`,
    returned by `configure_callbacks` so a Trainer needs nothing else; its penalty is
    [`ElasticNet`][reglight.penalties.ElasticNet]`(alpha, l1_ratio)`, the same parametrization)
    is one ISTA step. With `gradient="full"` the gradients of the minibatches are summed over the
    epoch and one exact proximal step is taken per epoch (memory bounded by the batch size; under
    DDP each process sums its shard and the gradients are averaged), accelerated by FISTA's
    extrapolation with adaptive restart when `accelerated`
    ([`FullBatchProximalGradient`][reglight.recipes.lasso.solver.FullBatchProximalGradient]); the
    step size is $1/L$ (see `reglight.recipes.lasso.scaling`), and training stops when a step
    changes no coefficient by more than `tol` times the largest one. This converges to the
    minimizer of $F$. `gradient="stochastic"` takes one proximal SGD step per minibatch
    (stochastic ISTA: cheaper steps, slower convergence; see `lr_decay`).

    **Set-up** (`setup()`, from `trainer.datamodule`): the training split is read once (float64)
    to compute the standardization (buffers `x_mean` / `x_scale`), the step size, and `alpha` by
    K-fold cross-validation when `alpha` is `None`
    ([`cross_validate_alpha`][reglight.recipes.lasso.cv.cross_validate_alpha], rule
    `alpha_rule`). The layer is built there, so any datamodule with `train_dataset` (`(x, y)`
    pairs) and `task` works ([`TabularDataModule`][reglight.recipes.lasso.TabularDataModule] also
    gives `feature_names` and `n_classes`).

    **After training**: [`selected_features`][reglight.recipes.lasso.SparseLinearModel.selected_features],
    [`coefficients`][reglight.recipes.lasso.SparseLinearModel.coefficients] (standardized or in
    original units), the relaxed-lasso refit on the selected features (`reglight.recipes.lasso.refit`)
    and test metrics of both (`test/r2`, `test/mse`, `test/r2_refit`, ...; classification
    `test/acc`, `test/auroc`, `test/loss`), the coefficient table and the regularization-path
    figure logged through [`reglight.logging`][reglight.logging], and
    [`report`][reglight.recipes.lasso.SparseLinearModel.report] for `reglight run`.

    **Threads.** torch's thread count is process-wide, so the model sets it only inside its own
    computations (each training, validation and test step, the set-up with the cross-validation,
    the refit and the end-of-test report) and restores it after each
    (`torch_threads`); nothing outside sees it.

    Args:
        alpha: scikit-learn's `alpha` (>= 0) on the standardized features; `None` to choose it
            by cross-validation on the training split.
        l1_ratio: scikit-learn's `l1_ratio` $\rho \in (0, 1]$: 1 is the lasso, less the elastic net.
        task: `"auto"` (the datamodule's), `"regression"`, `"binary"` or `"multiclass"`.
        alpha_rule: With `alpha=None`: `"min"` (lowest CV error) or `"1se"` (sparsest model
            within one standard error of it).
        cv_folds: Number of cross-validation folds.
        n_alphas: Size of the `alpha` grid of the cross-validation and of the path figure.
        eps: `alpha_min / alpha_max` of that grid.
        gradient: `"full"` (one exact proximal step per epoch) or `"stochastic"` (one per
            minibatch).
        accelerated: FISTA extrapolation with restart (`gradient="full"` only).
        lr: Step size; `None` for $1/L$ from the standardized training data.
        lr_decay: `gradient="stochastic"` only: the step of epoch $e$ is
            `lr / sqrt(1 + e)`, so the iterates converge (a constant step leaves a noise floor).
        tol: Stop when no coefficient changes by more than `tol` times the largest coefficient in
            one step (`gradient="full"`; 0 never stops early).
        refit_l2: Ridge strength $\gamma$ of the refit; `None` for 0 (regression) or `1e-3`
            (classification, which keeps separable classes finite).
        path_figure: Compute and log the regularization path at the end of testing.
        n_threads: torch's intra-op threads inside the model's computations (restored after
            each); `None` leaves them alone. One thread suits small tables, where synchronizing
            threads costs more than the arithmetic of a step.

    Raises:
        ValueError: if an argument is out of range.

    Examples:
        >>> import lightning.pytorch as pl
        >>> from reglight.recipes.lasso import TabularDataModule
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
    val_metrics: MetricCollection
    test_metrics: MetricCollection
    test_metrics_refit: MetricCollection

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
        n_threads: int | None = 1,
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
        check_n_threads(n_threads)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.penalty_hook = PenaltyHook(
            ElasticNet(alpha or 0.0, l1_ratio),
            method="proximal",
            include="linear.weight",
            name="penalty",
        )
        self.solver = FullBatchProximalGradient(accelerated=accelerated, tol=tol)
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
        self.convergence: Convergence | None = None

    # ------------------------------------------------------------------------------- properties

    @property
    def task(self) -> str:
        """The resolved task: `"regression"`, `"binary"` or `"multiclass"`."""
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

    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    # -------------------------------------------------------------------------------- building

    @override
    @with_model_threads
    def setup(self, stage: str) -> None:
        """Build the layer and the training statistics from `trainer.datamodule` (once)."""
        if self.linear is not None:
            return
        datamodule = self._datamodule()
        if datamodule is None or getattr(datamodule, "train_dataset", None) is None:
            raise RuntimeError(
                "SparseLinearModel builds itself from `trainer.datamodule`: pass a datamodule "
                "with a `train_dataset` of (x, y) pairs and a `task` (e.g. TabularDataModule)"
            )
        self.build(datamodule)

    def build(self, datamodule: Any) -> None:
        """Fit the standardization, choose `alpha` (if `None`) and create the layer.

        Args:
            datamodule: An object with `train_dataset` (`(x, y)` pairs) and `task`
                (`"regression"`, `"binary"`, `"multiclass"`); optionally `feature_names`,
                `n_classes` and `class_names`.

        Raises:
            ValueError: if the model's `task` does not fit the data.
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
            hp = self.hparams
            alpha, self.cv_curve = cross_validate_alpha(
                z.numpy(),
                y.numpy(),
                task,
                l1_ratio=hp["l1_ratio"],
                n_alphas=hp["n_alphas"],
                eps=hp["eps"],
                cv=hp["cv_folds"],
                rule=hp["alpha_rule"],
            )
            if self._trainer is not None:  # every process trains with rank 0's choice
                alpha = float(self.trainer.strategy.broadcast(alpha, src=0))
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
        self.val_metrics = metric_collection(task, n_classes, prefix="val/")
        self.test_metrics = metric_collection(task, n_classes, prefix="test/")
        self.test_metrics_refit = metric_collection(
            task, n_classes, prefix="test/", postfix="_refit"
        )

    def set_alpha(self, alpha: float) -> None:
        """Set `alpha`; the penalty hook's `ElasticNet(alpha, l1_ratio)` follows.

        Args:
            alpha: The new `alpha >= 0`.
        """
        self.alpha_ = check_nonnegative("alpha", alpha)
        self.penalty_hook.penalty.alpha = self.alpha_

    # --------------------------------------------------------------------------------- forward

    def standardize(self, x: Tensor) -> Tensor:
        """`(x - x_mean) / x_scale` with the training split's statistics.

        Args:
            x: `(n, p)` raw features.

        Returns:
            The standardized features (computed in the statistics' dtype, float64 by default),
            in the dtype of the model's weights.
        """
        z = (x.to(self.x_mean.dtype) - self.x_mean) / self.x_scale
        return z.to(self._layer().weight.dtype)

    def _squeeze(self, out: Tensor) -> Tensor:
        return out.squeeze(-1) if out.shape[-1] == 1 and self.task != "multiclass" else out

    @override
    def forward(self, x: Tensor) -> Tensor:
        """Predictions (regression) or logits: `(n,)`, or `(n, K)` for the multinomial model.

        Args:
            x: `(n, p)` raw (unstandardized) features.

        Returns:
            The model output.
        """
        return self._squeeze(self._layer()(self.standardize(x)))

    def forward_refit(self, x: Tensor) -> Tensor:
        """The output of the relaxed-lasso refit (same shapes as `forward`).

        Args:
            x: `(n, p)` raw features.

        Returns:
            The refit model's output.
        """
        z = self.standardize(x)
        return self._squeeze(z @ self.refit_weight.T + self.refit_bias)

    # -------------------------------------------------------------------------------- training

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = self.hparams["lr"]
        if lr is None:
            if self.lipschitz is None:
                raise RuntimeError("the step size needs the training data: build the model first")
            lr = 1.0 / self.lipschitz
        return torch.optim.SGD(self._layer().parameters(), lr=lr)

    @override
    def configure_callbacks(self) -> list[pl.Callback]:
        """The proximal [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] (once per Trainer)."""
        if any(cb is self.penalty_hook for cb in self.trainer.callbacks):  # type: ignore[attr-defined]
            return []
        return [self.penalty_hook]

    def _params(self) -> list[Tensor]:
        layer = self._layer()
        return [layer.weight, layer.bias]

    @override
    def on_train_start(self) -> None:
        if self.hparams["gradient"] == "full" and not math.isfinite(
            float(self.trainer.num_training_batches)
        ):
            raise RuntimeError(
                "gradient='full' needs a train dataloader with a length (it takes one step per "
                "epoch); use gradient='stochastic' for iterable datasets"
            )
        self.solver.start(self._params())
        self.converged_epoch = None
        self.convergence = None

    @override
    def on_train_epoch_start(self) -> None:
        if self.hparams["gradient"] == "stochastic" and self.hparams["lr_decay"]:
            optimizer = cast(Any, self.optimizers()).optimizer
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] / math.sqrt(1.0 + self.current_epoch)

    @override
    @with_model_threads
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        optimizer = cast(Any, self.optimizers())
        if self.hparams["gradient"] == "stochastic":
            loss = data_loss(self(x), y, self.task)
            self.manual_backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            self.log(
                "train/loss",
                loss.detach(),
                on_step=False,
                on_epoch=True,
                batch_size=len(x),
                sync_dist=True,
            )
            return
        params = self._params()
        self.solver.begin_batch(params)  # the epoch's gradient is taken at the extrapolated point
        loss_sum = data_loss(self(x), y, self.task, reduction="sum")
        self.manual_backward(loss_sum)
        self.solver.accumulate(loss_sum.detach(), len(x))
        if batch_idx + 1 >= self.trainer.num_training_batches:
            mean_loss = self.solver.mean_gradient_(params)
            self.log("train/loss", mean_loss, on_step=False, on_epoch=True, sync_dist=True)
            optimizer.step()  # SGD step, then the PenaltyHook's proximal step
            optimizer.zero_grad()
            if self.solver.update(params):
                self.converged_epoch = self.current_epoch
                self.trainer.should_stop = True

    @override
    @with_model_threads
    def on_train_end(self) -> None:
        """With `gradient="full"` and `tol > 0`: record where the solver stopped; warn if short.

        A run that reaches `max_epochs` before the stopping rule warns with
        [`ConvergenceWarning`][reglight.linear.ConvergenceWarning] (scikit-learn's category),
        giving the last step and the KKT violation reached, and
        [`report`][reglight.recipes.lasso.SparseLinearModel.report] marks the summary.
        """
        hp = self.hparams
        if hp["gradient"] != "full" or hp["tol"] == 0 or self.solver.last_change == math.inf:
            return
        datamodule = self._datamodule()
        dataset = getattr(datamodule, "train_dataset", None)
        kkt = self.kkt_violation(*dataset_tensors(dataset)) if dataset is not None else math.nan
        converged = self.converged_epoch is not None
        self.convergence = Convergence(
            converged, self.solver.steps, float(self.solver.last_change), float(hp["tol"]), kkt
        )
        if not converged:
            rank_zero_warn(self.convergence.message(), category=ConvergenceWarning)

    @torch.no_grad()
    def kkt_violation(self, x: Tensor, y: Tensor) -> float:
        r"""The largest violation of the optimality conditions of $F$ at the current coefficients.

        With $g = \nabla_W \tfrac1n\sum_i \ell$ on the (standardized) data: $|g_{kj} +
        \alpha(1-\rho)w_{kj} + \alpha\rho\,\mathrm{sign}(w_{kj})|$ for a nonzero coefficient,
        $(|g_{kj}| - \alpha\rho)_+$ for a zero one, and $|\partial_b|$ for the intercept; 0 at the
        minimizer.

        Args:
            x: `(n, p)` raw features (the training split for the solver's own objective).
            y: `(n,)` targets or class codes.

        Returns:
            The largest violation, in gradient units.
        """
        w, b = self.coefficients()
        w.requires_grad_(True)
        b.requires_grad_(True)
        with torch.enable_grad():
            out = self._squeeze(self._standardized(x) @ w.T + b)
            loss = data_loss(out, y.cpu(), self.task)
            gw, gb = torch.autograd.grad(loss, [w, b])
        w = w.detach()
        a1 = float(self.alpha_ or 0.0) * self.hparams["l1_ratio"]
        a2 = float(self.alpha_ or 0.0) * (1.0 - self.hparams["l1_ratio"])
        res = torch.where(
            w != 0, (gw + a2 * w + a1 * w.sign()).abs(), (gw.abs() - a1).clamp_min(0.0)
        )
        return max(float(res.max()), float(gb.abs().max()))

    @override
    @with_model_threads
    def on_fit_end(self) -> None:
        self.refit()

    # ------------------------------------------------------------------------------ evaluation

    @override
    @with_model_threads
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self.val_metrics.update(out, metric_target(y, self.task, out))

    @override
    def on_validation_epoch_end(self) -> None:
        # computed over all processes by torchmetrics: the same on each, so the mean keeps them
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    @override
    @with_model_threads
    def on_test_start(self) -> None:
        if not self.refit_done:
            self.refit()

    @override
    @with_model_threads
    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        out, out_refit = self(x), self.forward_refit(x)
        self.test_metrics.update(out, metric_target(y, self.task, out))
        self.test_metrics_refit.update(out_refit, metric_target(y, self.task, out_refit))

    @override
    @with_model_threads
    def on_test_epoch_end(self) -> None:
        lasso, refit = self.test_metrics.compute(), self.test_metrics_refit.compute()
        self.test_metrics.reset()
        self.test_metrics_refit.reset()
        # the same on every process (torchmetrics reduced them; alpha and the support are shared)
        self.log_dict({**lasso, **refit}, sync_dist=True)
        self.log_dict(
            {
                "test/n_selected": float(len(self.selected_indices())),
                "test/alpha": float(self.alpha_ or 0.0),
            },
            sync_dist=True,
        )
        self.test_results = {k: (float(v), float(refit[f"{k}_refit"])) for k, v in lasso.items()}
        if self.trainer.is_global_zero:
            self._log_artifacts()

    # --------------------------------------------------------------------------- coefficients

    def coefficients(self, original_units: bool = False) -> tuple[Tensor, Tensor]:
        r"""The fitted `(W, b)` as float64 CPU tensors of shapes `(n_outputs, p)` and `(n_outputs,)`.

        Args:
            original_units: Express them for the raw features: $W/s$ and $b - (W/s)\mu$, so
                that `x @ W.T + b` equals the model's output on raw `x`.

        Returns:
            `(W, b)`.
        """
        layer = self._layer()
        return self._in_units(layer.weight, layer.bias, original_units)

    def refit_coefficients(self, original_units: bool = False) -> tuple[Tensor, Tensor]:
        """The relaxed-lasso refit's `(W, b)` (zeros outside the selected features).

        Args:
            original_units: As in `coefficients`.

        Returns:
            `(W, b)`.
        """
        return self._in_units(self.refit_weight, self.refit_bias, original_units)

    def _in_units(self, weight: Tensor, bias: Tensor, original: bool) -> tuple[Tensor, Tensor]:
        w = weight.detach().to("cpu", torch.float64).clone()
        b = bias.detach().to("cpu", torch.float64).clone()
        if original:
            w = w / self.x_scale.detach().to("cpu", torch.float64)
            b = b - w @ self.x_mean.detach().to("cpu", torch.float64)
        return w, b

    def _standardized(self, x: Tensor) -> Tensor:
        """Raw features standardized in float64 on the CPU (for the full-batch computations)."""
        mean = self.x_mean.detach().to("cpu", torch.float64)
        scale = self.x_scale.detach().to("cpu", torch.float64)
        return (x.to("cpu", torch.float64) - mean) / scale

    def selected_indices(self) -> list[int]:
        """Indices of the features with a nonzero coefficient (for any output)."""
        w, _ = self.coefficients()
        return torch.nonzero((w != 0).any(0)).flatten().tolist()

    def _features(self, selected_only: bool) -> list[SelectedFeature]:
        w, _ = self.coefficients()
        wo, _ = self.coefficients(original_units=True)
        r, _ = self.refit_coefficients()
        ro, _ = self.refit_coefficients(original_units=True)
        return feature_rows(self.feature_names, w, wo, r, ro, selected_only=selected_only)

    def selected_features(self) -> list[SelectedFeature]:
        """The selected features, largest standardized coefficient first.

        Returns:
            A list of [`SelectedFeature`][reglight.recipes.lasso.SelectedFeature].
        """
        return self._features(selected_only=True)

    @torch.no_grad()
    def objective(self, x: Tensor, y: Tensor) -> float:
        r"""The penalized objective $F(W, b)$ on raw data (standardized with the training statistics).

        Args:
            x: `(n, p)` raw features.
            y: `(n,)` targets or class codes.

        Returns:
            $F$ in float64.
        """
        w, b = self.coefficients()
        loss = data_loss(self._squeeze(self._standardized(x) @ w.T + b), y.cpu(), self.task)
        penalty = ElasticNet(float(self.alpha_ or 0.0), self.hparams["l1_ratio"])
        return float(loss + penalty.value([w]))

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
            dataset: `(x, y)` training pairs; default: `trainer.datamodule.train_dataset`.
        """
        if dataset is None:
            dataset = getattr(self._datamodule(), "train_dataset", None)
            if dataset is None:
                rank_zero_warn("SparseLinearModel: no training data for the refit; skipped")
                return
        x, y = dataset_tensors(dataset)
        weight, bias = relaxed_refit(
            self._standardized(x),
            y,
            self.task,
            self.selected_indices(),
            self.n_outputs,
            self._ridge(),
            init=self.coefficients(),
        )
        self.refit_weight.copy_(weight.to(self.refit_weight))
        self.refit_bias.copy_(bias.to(self.refit_bias))
        self.refit_done = True

    # -------------------------------------------------------------------------------- report

    def _output_labels(self) -> list[str]:
        return list(self.class_names) if self.task == "multiclass" else [""]

    def coefficient_table(self, selected_only: bool = True) -> Any:
        """The coefficients as a `reglight.logging.Table` (standardized, original units, refit).

        Args:
            selected_only: Only the selected features (largest first); else every feature in order.

        Returns:
            A `reglight.logging.Table`.
        """
        if not selected_only:
            return coefficient_table(self._features(False), self._output_labels(), "Coefficients")
        n_sel = len(self.selected_indices())
        how = "" if self.hparams["alpha"] is not None else f", {self.hparams['alpha_rule']} CV rule"
        title = (
            f"Selected features: {n_sel} of {self.n_features} "
            f"(alpha={float(self.alpha_ or 0.0):.4g}{how}, l1_ratio={self.hparams['l1_ratio']:g})"
        )
        if self.convergence is not None and not self.convergence.converged:
            title += f" -- solver {self.convergence.status}"
        return coefficient_table(self._features(True), self._output_labels(), title)

    def report(self) -> list[Any]:
        """Printable tables: the selected features, the test metrics, support recovery (synthetic).

        Returns:
            A list of `reglight.logging.Table`.
        """
        if self.linear is None:
            return []
        tables = [self.coefficient_table()]
        if self.convergence is not None:
            tables.append(convergence_table(self.convergence))
        if self.test_results:
            tables.append(metrics_table(self.test_results))
        truth = getattr(self._datamodule(), "true_coef", None)
        if truth is not None and len(truth) == self.n_features:
            tables.append(support_recovery_table(self.selected_indices(), truth))
        return tables

    def regularization_path(self) -> tuple[np.ndarray, np.ndarray]:
        """The path on the standardized training split, from the full-batch solvers of `reglight.linear`.

        Returns:
            `(alphas, coefs)` with `coefs` of shape `(n_features, n_alphas)` (for the
            multinomial model: each feature's Euclidean norm over the classes).
        """
        hp = self.hparams
        x, y = dataset_tensors(self._datamodule().train_dataset)
        return regularization_path(
            self._standardized(x).numpy(),
            y.numpy(),
            self.task,
            l1_ratio=hp["l1_ratio"],
            n_alphas=hp["n_alphas"],
            eps=hp["eps"],
        )

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

    @override
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

    @override
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
