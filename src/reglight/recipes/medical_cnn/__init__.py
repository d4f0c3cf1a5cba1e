"""Recipe: a small CNN for MedMNIST images with stacked regularization.

`reglight run medical_cnn` trains [MedicalCNN][reglight.recipes.medical_cnn.MedicalCNN] on
[MedMNISTDataModule][reglight.recipes.medical_cnn.MedMNISTDataModule] (BreastMNIST by default) with L2
weight decay, dropout after the fully connected layer, scheduled augmentation, early stopping that restores
the best weights (selected on validation AUC) and a shallow network, then reports test AUC/ACC as
`medmnist.Evaluator` computes them, the generalization gap and the confusion matrix.
`reglight ablate medical_cnn` removes each regularizer in turn over several seeds (the variants are declared
in the `ablation:` section of `recipes/medical_cnn.yaml` and run by [reglight.ablation][reglight.ablation]).

Examples:
    >>> spec = task_spec("breastmnist")
    >>> spec.task, spec.num_classes, spec.label_names
    ('binary-class', 2, ('malignant', 'normal, benign'))
"""

from __future__ import annotations

from .augment import medical_augmentation
from .data import (
    MEDMNIST_2D_FLAGS,
    MEDMNIST_SIZES,
    MedMNISTDataModule,
    MedMNISTFileError,
    MedMNISTSplit,
    TaskSpec,
    default_root,
    download_medmnist,
    load_medmnist_npz,
    npz_filename,
    task_spec,
    write_synthetic_medmnist,
)
from .metrics import (
    medmnist_confusion_matrix,
    medmnist_inputs,
    medmnist_metric_collection,
    medmnist_metrics,
    scores_from_logits,
)
from .model import MedicalCNN
from .network import DeepEnsemble, SmallCNN, average_logits, check_architecture

__all__ = [
    "MEDMNIST_2D_FLAGS",
    "MEDMNIST_SIZES",
    "DeepEnsemble",
    "MedMNISTDataModule",
    "MedMNISTFileError",
    "MedMNISTSplit",
    "MedicalCNN",
    "SmallCNN",
    "TaskSpec",
    "average_logits",
    "check_architecture",
    "default_root",
    "download_medmnist",
    "load_medmnist_npz",
    "medical_augmentation",
    "medmnist_confusion_matrix",
    "medmnist_inputs",
    "medmnist_metric_collection",
    "medmnist_metrics",
    "npz_filename",
    "scores_from_logits",
    "task_spec",
    "write_synthetic_medmnist",
]
