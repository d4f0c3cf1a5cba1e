"""The small convolutional network of the medical-image CNN recipe (pure torch, no Lightning)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from reglight._validation import check_choice, check_positive_int, check_probability
from reglight.nn import NORM_KINDS, DropBlock2d, convert_norms

__all__ = ["DeepEnsemble", "SmallCNN", "average_logits", "check_architecture"]


def check_architecture(
    *,
    depth: int,
    width: int,
    blocks_per_stage: int,
    hidden: int,
    dropout: float,
    dropblock: float,
    block_size: int,
    norm: str,
    virtual_batch_size: int,
) -> None:
    """Check the arguments that shape a [SmallCNN][reglight.recipes.medical_cnn.SmallCNN], without building it.

    Args:
        depth: Number of stages, a positive integer.
        width: Channels of the first stage, a positive integer.
        blocks_per_stage: Convolution blocks per stage, a positive integer.
        hidden: Units of the fully connected layer, a positive integer.
        dropout: Dropout probability in $[0, 1)$.
        dropblock: DropBlock probability in $[0, 1)$.
        block_size: DropBlock block size, a positive integer.
        norm: One of `reglight.nn.NORM_KINDS`.
        virtual_batch_size: Virtual batch size of ghost batch norm, a positive integer.

    Raises:
        ValueError: Naming the first argument out of range and its value.

    Examples:
        >>> check_architecture(depth=0, width=8, blocks_per_stage=1, hidden=8, dropout=0.1,
        ...                    dropblock=0.0, block_size=3, norm="batch", virtual_batch_size=16)
        Traceback (most recent call last):
            ...
        ValueError: `depth` must be an integer >= 1, got 0
    """
    for name, value in (
        ("depth", depth),
        ("width", width),
        ("blocks_per_stage", blocks_per_stage),
        ("hidden", hidden),
        ("block_size", block_size),
        ("virtual_batch_size", virtual_batch_size),
    ):
        check_positive_int(name, value)
    check_probability("dropout", dropout)
    check_probability("dropblock", dropblock)
    check_choice("norm", norm, NORM_KINDS)


class SmallCNN(nn.Module):
    """A small VGG-style CNN whose capacity is set by two numbers: depth and width.

    `depth` stages, stage `i` with `width·2^i` channels made of `blocks_per_stage` blocks
    `conv3×3 → norm → ReLU`, each stage followed by 2×2 max-pooling (ceil mode, so any depth fits a
    28×28 image); then global average pooling, a fully connected layer of `hidden` units with ReLU,
    **dropout** `p = dropout` (dropout after the fully connected layer), and the output layer.
    Optional DropBlock (Ghiasi et al. 2018) acts on the feature maps of the last two stages.

    Depth and width are the "shallower network" knob: fewer layers and smaller hidden dimensions regularize a model
    for a dataset of a few hundred images. The default, 3 stages of 2 convolutions (6 layers, 32-64-128
    channels, 0.3 M parameters), was the best of 3 to 9 convolution layers in a 4-fold cross-validation on
    BreastMNIST (3 layers underfit, 8-9 overfit); the ablation's "deeper network" uses 12.

    Normalization layers are built as `nn.BatchNorm2d` and swapped with `reglight.nn.convert_norms` for
    the other kinds (`"ghost"`, `"renorm"`, `"group"`, `"layer2d"`, `"none"`).

    Args:
        in_channels: Image channels (1 for grayscale, 3 for RGB).
        num_classes: Number of outputs (classes, or labels for multi-label).
        depth: Number of stages (each halves the resolution).
        width: Channels of the first stage; doubled at every stage.
        blocks_per_stage: Convolution blocks per stage.
        hidden: Units of the fully connected layer before the output.
        dropout: Dropout probability after the fully connected layer.
        dropblock: DropBlock drop probability on the last two stages (0 disables it).
        block_size: DropBlock block size.
        norm: Normalization kind, one of `reglight.nn.NORM_KINDS`: `"batch"`, `"ghost"`,
            `"renorm"`, `"group"`, `"layer2d"` or `"none"`.
        virtual_batch_size: Virtual batch size of ghost batch norm (`norm="ghost"` only).

    Examples:
        >>> import torch
        >>> net = SmallCNN(in_channels=1, num_classes=2, depth=3, width=16)
        >>> net(torch.randn(4, 1, 28, 28)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 3,
        width: int = 32,
        blocks_per_stage: int = 2,
        hidden: int = 128,
        dropout: float = 0.2,
        dropblock: float = 0.0,
        block_size: int = 3,
        norm: str = "batch",
        virtual_batch_size: int = 16,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
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
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage in range(depth):
            c_out = width * 2**stage
            for _ in range(blocks_per_stage):
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
            if dropblock > 0 and stage >= depth - 2:
                layers.append(DropBlock2d(dropblock, block_size=block_size))
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, hidden)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        if norm == "ghost":
            convert_norms(self, "ghost", virtual_batch_size=virtual_batch_size)
        elif norm != "batch":
            convert_norms(self, norm)  # type: ignore[arg-type]
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        """Logits `(N, num_classes)` of images `(N, C, H, W)`."""
        h = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(self.act(self.fc(h))))


def average_logits(logits: Sequence[Tensor], multilabel: bool = False) -> Tensor:
    r"""Logits of the average of the predicted probabilities of several outputs.

    $\bar p = \frac1K \sum_k \operatorname{softmax}(z_k)$, returned as $\log \bar p$ (whose softmax is
    $\bar p$); for multi-label outputs $\bar p = \frac1K\sum_k \sigma(z_k)$ per label, returned as
    $\operatorname{logit} \bar p$. Averaging probabilities, not logits, is how deep ensembles and
    test-time augmentation combine predictions (Lakshminarayanan et al. 2017).

    Args:
        logits: `K >= 1` tensors `(N, num_classes)`.
        multilabel: Sigmoid per label instead of a softmax over classes.

    Returns:
        Logits `(N, num_classes)`; the input itself when `K == 1`.

    Examples:
        >>> import torch
        >>> z = average_logits([torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])])
        >>> z.softmax(-1)
        tensor([[0.5000, 0.5000]])
    """
    if len(logits) == 0:
        raise ValueError("`logits` must hold at least one tensor, got an empty sequence")
    if len(logits) == 1:
        return logits[0]
    if multilabel:
        p = torch.stack([z.sigmoid() for z in logits]).mean(0)
        return torch.logit(p, eps=1e-7)
    p = torch.stack([z.softmax(-1) for z in logits]).mean(0)
    return p.clamp_min(1e-12).log()


class DeepEnsemble(nn.Module):
    r"""Independently initialized networks trained side by side; predicts with their average probability.

    A deep ensemble (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and scalable predictive
    uncertainty estimation using deep ensembles", NeurIPS): the explicit form of the model averaging that
    dropout approximates with shared weights. The members see the same batches but start from their own
    random initialization and draw their own dropout masks. Training minimizes the **sum** of the
    members' losses $\sum_k L(z_k, y)$: each member's gradient is then exactly the gradient of its own
    loss, so with an optimizer that works per parameter (Adam, SGD, and their coupled or decoupled weight
    decay) each member takes the same steps as if it were trained alone on the same batches. (The mean of
    the losses would divide each member's data gradient by $K$ while the weight-decay term stays: a
    $K$ times stronger L2 penalty.) [forward][reglight.recipes.medical_cnn.DeepEnsemble.forward] returns the
    logits of the averaged probabilities ([average_logits][reglight.recipes.medical_cnn.average_logits]).
    It costs $K$ times one network.

    Args:
        members: `K >= 1` networks with the same outputs.
        multilabel: Average per-label sigmoids instead of softmax probabilities.

    Examples:
        >>> import torch
        >>> ens = DeepEnsemble([SmallCNN(1, 2, depth=2, width=8) for _ in range(3)])
        >>> [z.shape for z in ens.member_logits(torch.randn(4, 1, 28, 28))]
        [torch.Size([4, 2]), torch.Size([4, 2]), torch.Size([4, 2])]
        >>> ens(torch.randn(4, 1, 28, 28)).shape
        torch.Size([4, 2])
    """

    def __init__(self, members: Sequence[nn.Module], multilabel: bool = False) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("`members` must hold at least one network, got an empty sequence")
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel

    def member_logits(self, x: Tensor) -> list[Tensor]:
        """Each member's logits `(N, num_classes)`."""
        return [m(x) for m in self.members]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the members' average probability."""
        return average_logits(self.member_logits(x), self.multilabel)

    def extra_repr(self) -> str:
        return f"multilabel={self.multilabel}"
