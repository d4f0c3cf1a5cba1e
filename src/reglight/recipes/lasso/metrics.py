"""The lasso recipe's evaluation metrics as one torchmetrics `MetricCollection` per split.

- regression: `mse` and `r2` of the predictions;
- binary / multiclass classification: `loss` (the mean log-loss of the logits, the recipe's data
  term), `acc` and `auroc` of the predicted probabilities (sigmoid / softmax of the logits).

Keys are slash namespaces: `metric_collection(task, n_classes, "val/")` computes `val/r2`, ...;
`postfix="_refit"` gives `test/r2_refit`, ....

Examples:
    >>> import torch
    >>> metrics = metric_collection("binary", 2, prefix="val/")
    >>> metrics.update(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 0, 0, 0]))
    >>> {k: round(float(v), 4) for k, v in metrics.compute().items()}
    {'val/acc': 0.75, 'val/auroc': 1.0, 'val/loss': 0.3657}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanSquaredError, Metric, MetricCollection, R2Score
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
)
from torchmetrics.wrappers import LambdaInputTransformer
from typing_extensions import override

from reglight._validation import check_choice

from .objective import data_loss

__all__ = ["LogLoss", "metric_collection", "metric_target"]


class LogLoss(Metric):
    r"""Mean log-loss of logits: $\frac{1}{n}\sum_i \ell(y_i, \eta_i)$, logistic or softmax.

    Args:
        task: `"binary"` (one logit per row) or `"multiclass"` (`(n, K)` logits).
        kwargs: passed to `torchmetrics.Metric`.

    Examples:
        >>> metric = LogLoss("binary")
        >>> metric.update(torch.tensor([0.0, 0.0]), torch.tensor([1, 0]))
        >>> metric.compute()
        tensor(0.6931)
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self, task: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = check_choice("task", task, ("binary", "multiclass"))
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @override
    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of logits and class codes."""
        self.total += data_loss(preds, target, self.task, reduction="sum").to(torch.float64)
        self.count += target.numel()

    @override
    def compute(self) -> Tensor:
        """The mean log-loss so far."""
        return (self.total / self.count).to(torch.get_default_dtype())


def _probabilities(task: str) -> Any:
    return torch.sigmoid if task == "binary" else (lambda logits: torch.softmax(logits, dim=-1))


def metric_collection(
    task: str, n_classes: int = 2, prefix: str | None = None, postfix: str | None = None
) -> MetricCollection:
    """The metrics of one split, updated with `(model output, target)`.

    Args:
        task: `"regression"`, `"binary"` or `"multiclass"`.
        n_classes: number of classes (classification).
        prefix: prepended to every key, e.g. `"val/"`.
        postfix: appended to every key, e.g. `"_refit"`.

    Returns:
        A `MetricCollection` whose `update(output, target)` takes predictions (regression) or
        logits, and targets as [`metric_target`][reglight.recipes.lasso.metrics.metric_target]
        prepares them.
    """
    check_choice("task", task, ("regression", "binary", "multiclass"))
    metrics: dict[str, Metric | MetricCollection]
    if task == "regression":
        metrics = {"mse": MeanSquaredError(), "r2": R2Score()}
    else:
        probabilities = _probabilities(task)
        if task == "binary":
            acc: Metric = BinaryAccuracy()
            auroc: Metric = BinaryAUROC()
        else:
            acc = MulticlassAccuracy(n_classes, average="micro")
            auroc = MulticlassAUROC(n_classes)
        metrics = {
            "loss": LogLoss(task),
            "acc": LambdaInputTransformer(acc, transform_pred=probabilities),
            "auroc": LambdaInputTransformer(auroc, transform_pred=probabilities),
        }
    return MetricCollection(metrics, prefix=prefix, postfix=postfix, compute_groups=False)


def metric_target(target: Tensor, task: str, like: Tensor) -> Tensor:
    """Targets in the form the metrics want: the output's dtype (regression) or int64 codes.

    Args:
        target: the batch's targets.
        task: `"regression"`, `"binary"` or `"multiclass"`.
        like: the model output.

    Returns:
        The converted targets.
    """
    return target.to(like.dtype) if task == "regression" else target.long()
