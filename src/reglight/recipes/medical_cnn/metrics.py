"""MedMNIST's evaluation metrics (AUC and ACC) as a torchmetrics `MetricCollection`, correct under DDP.

`medmnist.Evaluator` (`getAUC`/`getACC`) scores a model from its per-class scores (softmax outputs, or
sigmoid outputs for multi-label):

- binary-class: AUC of the positive-class score `s[:, 1]`; ACC of `s[:, 1] > 0.5`;
- multi-class and ordinal-regression: mean of the one-vs-rest AUCs over classes; ACC of `argmax s`;
- multi-label: mean over labels of the per-label AUC; mean over labels of the per-label ACC at 0.5.

Here the same quantities come from torchmetrics (`BinaryAUROC`, `MulticlassAUROC(average="macro")`,
`MultilabelAUROC(average="macro")` and the matching accuracies), which accumulate over batches and gather
across processes. They take the scores and targets that
[medmnist_inputs][reglight.recipes.medical_cnn.medmnist_inputs] makes from a model's logits.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics import classification as tmc

from reglight._validation import check_choice, check_positive_int

from .data import TASKS

__all__ = [
    "medmnist_confusion_matrix",
    "medmnist_inputs",
    "medmnist_metric_collection",
    "medmnist_metrics",
    "scores_from_logits",
]

_MULTI_LABEL = "multi-label, binary-class"


def scores_from_logits(logits: Tensor, task: str) -> Tensor:
    """Per-class scores as medmnist evaluates them: sigmoid for multi-label, softmax otherwise.

    Args:
        logits: `(N, K)` model outputs.
        task: A medmnist task type.

    Returns:
        `(N, K)` scores in $[0, 1]$.

    Examples:
        >>> scores_from_logits(torch.zeros(1, 2), "binary-class")
        tensor([[0.5000, 0.5000]])
    """
    check_choice("task", task, TASKS)
    return torch.sigmoid(logits) if task == _MULTI_LABEL else logits.softmax(dim=-1)


def medmnist_inputs(logits: Tensor, target: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """The `(preds, target)` pair that the metrics of a MedMNIST task take, from logits and labels.

    Binary tasks give the positive-class score `s[:, 1]`, multi-label tasks the `(N, K)` sigmoid scores and
    integer labels, the other tasks the `(N, K)` softmax scores and class indices. The scores are detached
    and in float32.

    Args:
        logits: `(N, K)` model outputs.
        target: Class indices `(N,)` or, for multi-label, `(N, K)` 0/1 labels.
        task: A medmnist task type.

    Returns:
        `(preds, target)` for
        [medmnist_metric_collection][reglight.recipes.medical_cnn.medmnist_metric_collection] and
        [medmnist_confusion_matrix][reglight.recipes.medical_cnn.medmnist_confusion_matrix].

    Examples:
        >>> medmnist_inputs(torch.zeros(1, 2), torch.tensor([1]), "binary-class")
        (tensor([0.5000]), tensor([1]))
    """
    scores = scores_from_logits(logits.detach().float(), task)
    if task == "binary-class":
        return scores[:, 1], target
    if task == _MULTI_LABEL:
        return scores, target.long()
    return scores, target


def _check_task(task: str, num_classes: int) -> None:
    check_choice("task", task, TASKS)
    check_positive_int("num_classes", num_classes, minimum=2)
    if task == "binary-class" and num_classes != 2:
        raise ValueError(f"`num_classes` must be 2 for a binary-class task, got {num_classes}")


def medmnist_metric_collection(task: str, num_classes: int, prefix: str = "") -> MetricCollection:
    """AUC and ACC of a MedMNIST task as a `MetricCollection` with the keys `{prefix}acc`, `{prefix}auc`.

    Update it with [medmnist_inputs][reglight.recipes.medical_cnn.medmnist_inputs]; inside a
    LightningModule, `self.log_dict(collection)` logs both at the end of the epoch.

    Args:
        task: A medmnist task type (`"binary-class"`, `"multi-class"`, `"multi-label, binary-class"` or
            `"ordinal-regression"`).
        num_classes: Number of classes (number of labels for multi-label); 2 for binary tasks.
        prefix: Prepended to the metric names, e.g. `"val/"`.

    Returns:
        The collection.

    Raises:
        ValueError: For an unknown `task`, or a `num_classes` below 2 (or not 2 for a binary task).

    Examples:
        >>> m = medmnist_metric_collection("binary-class", 2, prefix="val/")
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
        >>> m.update(*medmnist_inputs(logits, torch.tensor([0, 1, 1]), "binary-class"))
        >>> {k: round(v.item(), 3) for k, v in m.compute().items()}
        {'val/acc': 0.667, 'val/auc': 1.0}
    """
    _check_task(task, num_classes)
    metrics: dict[str, Metric | MetricCollection]
    if task == "binary-class":
        metrics = {"auc": tmc.BinaryAUROC(), "acc": tmc.BinaryAccuracy(threshold=0.5)}
    elif task == _MULTI_LABEL:
        metrics = {
            "auc": tmc.MultilabelAUROC(num_labels=num_classes, average="macro"),
            "acc": tmc.MultilabelAccuracy(num_labels=num_classes, threshold=0.5, average="macro"),
        }
    else:
        metrics = {
            "auc": tmc.MulticlassAUROC(num_classes=num_classes, average="macro"),
            "acc": tmc.MulticlassAccuracy(num_classes=num_classes, average="micro"),
        }
    return MetricCollection(metrics, prefix=prefix or None)


def medmnist_confusion_matrix(task: str, num_classes: int) -> Metric:
    """The confusion matrix of a MedMNIST task, thresholded as its ACC is.

    Rows are the true class, columns the predicted class. Binary tasks threshold the positive-class score
    at 0.5, multi-class tasks take the `argmax`, multi-label tasks give one 2×2 matrix per label
    (`(K, 2, 2)`). Update it with [medmnist_inputs][reglight.recipes.medical_cnn.medmnist_inputs].

    Args:
        task: A medmnist task type.
        num_classes: Number of classes (number of labels for multi-label); 2 for binary tasks.

    Returns:
        A torchmetrics confusion-matrix metric.

    Examples:
        >>> cm = medmnist_confusion_matrix("binary-class", 2)
        >>> logits = torch.tensor([[0.0, 0.1], [0.3, 0.0], [0.0, 2.0], [1.0, 0.0]])
        >>> cm.update(*medmnist_inputs(logits, torch.tensor([1, 1, 0, 0]), "binary-class"))
        >>> cm.compute().tolist()
        [[1, 1], [1, 1]]
    """
    _check_task(task, num_classes)
    if task == "binary-class":
        return tmc.BinaryConfusionMatrix(threshold=0.5)
    if task == _MULTI_LABEL:
        return tmc.MultilabelConfusionMatrix(num_labels=num_classes, threshold=0.5)
    return tmc.MulticlassConfusionMatrix(num_classes=num_classes)


def medmnist_metrics(logits: Tensor, target: Tensor, task: str) -> dict[str, float]:
    """AUC and ACC of a whole split at once, as `medmnist.Evaluator` computes them.

    Args:
        logits: `(N, K)` model outputs.
        target: Class indices `(N,)` or, for multi-label, `(N, K)` 0/1 labels.
        task: A medmnist task type.

    Returns:
        `{"acc": float, "auc": float}`.

    Examples:
        >>> medmnist_metrics(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 0]), "binary-class")
        {'acc': 1.0, 'auc': 1.0}
    """
    m = medmnist_metric_collection(task, logits.shape[-1])
    m.update(*medmnist_inputs(logits, target, task))
    return {k: float(v) for k, v in m.compute().items()}
