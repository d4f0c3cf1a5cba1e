"""MedMNIST's evaluation metrics (AUC and ACC) as torchmetrics, correct under DDP.

``medmnist.Evaluator`` (``getAUC``/``getACC``) scores a model from its per-class scores (softmax outputs, or
sigmoid outputs for multi-label):

- binary-class: AUC of the positive-class score ``s[:, 1]``; ACC of ``s[:, 1] > 0.5``;
- multi-class and ordinal-regression: mean of the one-vs-rest AUCs over classes; ACC of ``argmax s``;
- multi-label: mean over labels of the per-label AUC; mean over labels of the per-label ACC at 0.5.

Here the same quantities come from torchmetrics (``BinaryAUROC``, ``MulticlassAUROC(average="macro")``,
``MultilabelAUROC(average="macro")`` and the matching accuracies), which accumulate over batches and gather
across processes.
"""

from __future__ import annotations

import torch
import torchmetrics
from torch import Tensor, nn
from torchmetrics import classification as tmc

from reglight._validation import check_choice, check_positive_int

from .data import TASKS

__all__ = ["MedMNISTMetrics", "medmnist_metrics", "scores_from_logits"]


def scores_from_logits(logits: Tensor, task: str) -> Tensor:
    """Per-class scores as medmnist evaluates them: sigmoid for multi-label, softmax otherwise.

    Args:
        logits: ``(N, K)`` model outputs.
        task: A medmnist task type.

    Returns:
        ``(N, K)`` scores in ``[0, 1]``.

    Example:
        >>> scores_from_logits(torch.zeros(1, 2), "binary-class")
        tensor([[0.5000, 0.5000]])
    """
    check_choice("task", task, TASKS)
    return torch.sigmoid(logits) if task == "multi-label, binary-class" else logits.softmax(dim=-1)


class MedMNISTMetrics(nn.Module):
    """AUC and ACC of a MedMNIST task, accumulated over batches (and processes).

    Args:
        task: A medmnist task type (``"binary-class"``, ``"multi-class"``, ``"multi-label, binary-class"``
            or ``"ordinal-regression"``).
        num_classes: Number of classes (number of labels for multi-label); 2 for binary tasks.
        confusion: Also accumulate the confusion matrix (rows: true class, columns: predicted class; binary
            tasks threshold the positive-class score at 0.5 like the ACC, multi-class tasks use ``argmax``,
            multi-label tasks give one 2×2 matrix per label).

    Example:
        >>> m = MedMNISTMetrics("binary-class", 2)
        >>> m.update(torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
        >>> {k: round(v.item(), 3) for k, v in m.compute().items()}
        {'auc': 1.0, 'acc': 0.667}
    """

    def __init__(self, task: str, num_classes: int, confusion: bool = False) -> None:
        super().__init__()
        self.task = check_choice("task", task, TASKS)
        self.num_classes = check_positive_int("num_classes", num_classes, minimum=2)
        if task == "binary-class" and num_classes != 2:
            raise ValueError(f"`num_classes` must be 2 for a binary-class task, got {num_classes}")
        self.auc: torchmetrics.Metric
        self.acc: torchmetrics.Metric
        if task == "binary-class":
            self.auc = tmc.BinaryAUROC()
            self.acc = tmc.BinaryAccuracy(threshold=0.5)
        elif task == "multi-label, binary-class":
            self.auc = tmc.MultilabelAUROC(num_labels=num_classes, average="macro")
            self.acc = tmc.MultilabelAccuracy(
                num_labels=num_classes, threshold=0.5, average="macro"
            )
        else:
            self.auc = tmc.MulticlassAUROC(num_classes=num_classes, average="macro")
            self.acc = tmc.MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.confmat: torchmetrics.Metric | None = None
        if confusion:
            if task == "binary-class":
                self.confmat = tmc.BinaryConfusionMatrix(threshold=0.5)
            elif task == "multi-label, binary-class":
                self.confmat = tmc.MultilabelConfusionMatrix(num_labels=num_classes, threshold=0.5)
            else:
                self.confmat = tmc.MulticlassConfusionMatrix(num_classes=num_classes)

    def _inputs(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        scores = scores_from_logits(logits.detach().float(), self.task)
        if self.task == "binary-class":
            return scores[:, 1], target
        if self.task == "multi-label, binary-class":
            return scores, target.long()
        return scores, target

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``(N, K)`` and targets (class indices, or ``(N, K)`` 0/1)."""
        scores, target = self._inputs(logits, target)
        self.auc.update(scores, target)
        self.acc.update(scores, target)
        if self.confmat is not None:
            self.confmat.update(scores, target)

    def compute(self) -> dict[str, Tensor]:
        """``{"auc": ..., "acc": ...}`` over everything seen since the last :meth:`reset`."""
        return {"auc": self.auc.compute(), "acc": self.acc.compute()}

    def confusion_matrix(self) -> Tensor:
        """The accumulated confusion matrix: ``(K, K)`` counts, or ``(K, 2, 2)`` for multi-label.

        Raises:
            RuntimeError: If the metrics were built with ``confusion=False``.
        """
        if self.confmat is None:
            raise RuntimeError(
                "build MedMNISTMetrics with confusion=True to get a confusion matrix"
            )
        return self.confmat.compute()

    def reset(self) -> None:
        """Forget the accumulated batches."""
        self.auc.reset()
        self.acc.reset()
        if self.confmat is not None:
            self.confmat.reset()


def medmnist_metrics(logits: Tensor, target: Tensor, task: str) -> dict[str, float]:
    """AUC and ACC of a whole split at once, as ``medmnist.Evaluator`` computes them.

    Args:
        logits: ``(N, K)`` model outputs.
        target: Class indices ``(N,)`` or, for multi-label, ``(N, K)`` 0/1 labels.
        task: A medmnist task type.

    Returns:
        ``{"auc": float, "acc": float}``.

    Example:
        >>> medmnist_metrics(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 0]), "binary-class")
        {'auc': 1.0, 'acc': 1.0}
    """
    m = MedMNISTMetrics(task, logits.shape[-1])
    m.update(logits, target)
    return {k: float(v) for k, v in m.compute().items()}
