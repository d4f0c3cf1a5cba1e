"""The small convolutional network of the medical-image CNN recipe (pure torch, no Lightning)."""

from __future__ import annotations

from torch import Tensor, nn

from reglight._validation import check_choice, check_positive_int, check_probability
from reglight.nn import NORM_KINDS, DropBlock2d, convert_norms

__all__ = ["SmallCNN", "check_architecture"]


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
