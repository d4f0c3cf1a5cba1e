r"""Gallery figure 7: which entries of a batch each normalization layer computes its statistics over.

For a real batch (MedMNIST chest X-rays from `$REGLIGHT_DATA` when the folder holds
`pneumoniamnist.npz`, else scikit-learn's digits), each layer is run in training mode and one output
entry, the *probe*, is differentiated with respect to the whole input: the entries with a non-zero
derivative are exactly those its mean and variance were computed over (plus the probe itself). The
picture is drawn from those derivatives, not by hand, for

- `(N, C, H, W)` feature maps (the images through a fixed random 3x3 convolution to `C` channels):
  `nn.BatchNorm2d`, [GhostBatchNorm2d][reglight.nn.GhostBatchNorm2d], `nn.GroupNorm`,
  `nn.LayerNorm([C, H, W])` and [LayerNorm2d][reglight.nn.LayerNorm2d];
- `(N, T, D)` sequences (the image rows as tokens): `nn.BatchNorm1d` over the features,
  [MaskedBatchNorm1d][reglight.nn.MaskedBatchNorm1d] with a padding mask, and `nn.LayerNorm(D)`.

The layers' own statistics are checked too: batch norm's `running_mean` after one step with
`momentum=None` is the input's mean over `(N, H, W)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reglight._threads import torch_threads
from reglight.figures._base import GalleryFigure, register
from reglight.figures._style import new_figure
from reglight.nn import GhostBatchNorm2d, LayerNorm2d, MaskedBatchNorm1d

__all__ = [
    "NormGroup",
    "expected_group",
    "load_batch",
    "make_norm_axes",
    "norm_axes",
    "statistics_group",
]

N_SAMPLES = 4
N_CHANNELS = 4
GHOST_BATCH = 2
N_GROUPS = 2


def load_batch(n: int = N_SAMPLES) -> tuple[Tensor, str]:
    """`n` real grayscale images `(n, H, W)` in [0, 1] (float64) and a description of their source.

    MedMNIST's PneumoniaMNIST test images (average-pooled to 14x14) when `$REGLIGHT_DATA` holds
    `pneumoniamnist.npz`, else the first digits of scikit-learn's 8x8 digits.
    """
    root = os.environ.get("REGLIGHT_DATA")
    path = Path(root) / "pneumoniamnist.npz" if root else None
    if path is not None and path.is_file():
        with np.load(path) as data:
            images = torch.as_tensor(data["test_images"][:n], dtype=torch.float64) / 255.0
        return F.avg_pool2d(images.unsqueeze(1), 2).squeeze(
            1
        ), "PneumoniaMNIST chest X-rays (14x14)"
    from sklearn.datasets import load_digits

    digits = load_digits().images[:n] / 16.0
    return torch.as_tensor(digits, dtype=torch.float64), "scikit-learn digits (8x8)"


def statistics_group(
    forward: Callable[[Tensor], Tensor], x: Tensor, probe: tuple[int, ...]
) -> Tensor:
    """The input entries that the output at `probe` depends on: a boolean tensor shaped like `x`.

    For a normalization layer these are the entries its mean and variance at `probe` are computed over.

    Examples:
        >>> x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
        >>> int(statistics_group(nn.BatchNorm2d(2).double(), x, (0, 1, 0, 0)).sum())  # N * H * W
        48
    """
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(forward(x)[probe], x)
    return grad != 0


def expected_group(
    kind: str, shape: tuple[int, ...], probe: tuple[int, ...], lengths: Tensor | None = None
) -> Tensor:
    """The entries a layer of `kind` normalizes `probe` over, from its documented axes (the reference).

    Args:
        kind: `batch2d`, `ghost2d`, `group`, `layer_chw`, `layer2d`, `batch1d`, `masked1d` or `layer1d`.
        shape: `(N, C, H, W)` or `(N, T, D)`.
        probe: The probed entry.
        lengths: Sequence lengths (`masked1d` only).

    Returns:
        A boolean tensor of `shape`.

    Examples:
        >>> int(expected_group("layer2d", (2, 3, 4, 4), (0, 1, 2, 2)).sum())  # the C channels of a pixel
        3
    """
    idx = torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij")
    same = [i == p for i, p in zip(idx, probe, strict=True)]
    if kind == "batch2d":  # per channel, over N, H, W
        return same[1]
    if kind == "ghost2d":  # per channel and virtual batch
        return same[1] & (idx[0] // GHOST_BATCH == probe[0] // GHOST_BATCH)
    if kind == "group":  # per sample and channel group, over its channels and H, W
        per = shape[1] // N_GROUPS
        return same[0] & (idx[1] // per == probe[1] // per)
    if kind == "layer_chw":  # per sample, over C, H, W
        return same[0]
    if kind == "layer2d":  # per sample and pixel, over C
        return same[0] & same[2] & same[3]
    if kind == "batch1d":  # per feature, over N and T
        return same[2]
    if kind == "masked1d":  # per feature, over the real tokens
        assert lengths is not None
        return same[2] & (idx[1] < lengths[idx[0]])
    if kind == "layer1d":  # per token, over D
        return same[0] & same[1]
    raise ValueError(f"unknown `kind` {kind!r}")


@dataclass
class NormGroup:
    """One layer's recovered statistics group.

    Attributes:
        kind: Key of [expected_group][reglight.figures.norm_axes.expected_group].
        label: The layer, as drawn.
        axes: The axes it normalizes over, in words.
        x: The input batch.
        probe: The probed entry.
        group: The recovered group (boolean, like `x`).
        matches: Whether it equals the documented axes.
        mask: Real-token mask (sequences with padding only).
    """

    kind: str
    label: str
    axes: str
    x: Tensor
    probe: tuple[int, ...]
    group: Tensor
    matches: bool
    mask: Tensor | None = None


def _layers(c: int, d: int, chw: tuple[int, int, int]) -> list[tuple[str, str, str, nn.Module]]:
    return [
        ("batch2d", "nn.BatchNorm2d", "N, H, W per channel", nn.BatchNorm2d(c)),
        (
            "ghost2d",
            f"GhostBatchNorm2d(virtual_batch_size={GHOST_BATCH})",
            "virtual batch, H, W per channel",
            GhostBatchNorm2d(c, virtual_batch_size=GHOST_BATCH),
        ),
        (
            "group",
            f"nn.GroupNorm({N_GROUPS}, {c})",
            "channel group, H, W per sample",
            nn.GroupNorm(N_GROUPS, c),
        ),
        ("layer_chw", "nn.LayerNorm([C, H, W])", "C, H, W per sample", nn.LayerNorm(list(chw))),
        ("layer2d", "LayerNorm2d", "C per sample and pixel", LayerNorm2d(c)),
        ("batch1d", "nn.BatchNorm1d on (N, D, T)", "N, T per feature", nn.BatchNorm1d(d)),
        ("masked1d", "MaskedBatchNorm1d", "real tokens per feature", MaskedBatchNorm1d(d)),
        ("layer1d", "nn.LayerNorm(D)", "D per token", nn.LayerNorm(d)),
    ]


def _forward(kind: str, layer: nn.Module, mask: Tensor) -> Callable[[Tensor], Tensor]:
    """How the layer is called: channels first for `BatchNorm1d`, with the padding mask for the masked one."""

    def channels_first(x: Tensor) -> Tensor:
        return layer(x.transpose(1, 2)).transpose(1, 2)

    def masked(x: Tensor) -> Tensor:
        return layer(x, mask)

    if kind == "batch1d":
        return channels_first
    return masked if kind == "masked1d" else layer


def norm_axes(seed: int = 0) -> tuple[list[NormGroup], dict[str, float], str]:
    """Recover the statistics group of every layer on a real batch and check the layers' statistics.

    Args:
        seed: Seed of the convolution's weights.

    Returns:
        The groups, the checks (`batch2d_running_mean_error`, `layer_chw_output_error`,
        `masked1d_running_mean_error`: largest absolute differences to the closed forms) and the data's
        description.
    """
    with torch_threads(1):
        return _norm_axes(seed)


def _norm_axes(seed: int) -> tuple[list[NormGroup], dict[str, float], str]:
    images, source = load_batch()
    n, h, w = images.shape
    torch.manual_seed(seed)
    conv = nn.Conv2d(1, N_CHANNELS, 3, padding=1).to(torch.float64)
    with torch.no_grad():
        maps = conv(images.unsqueeze(1))  # (N, C, H, W)
    seq = images  # (N, T, D): the rows of each image as tokens
    lengths = torch.tensor([h, h - 3, h - 1, h - 5][:n]).clamp(min=1)
    mask = torch.arange(h).unsqueeze(0) < lengths.unsqueeze(1)  # (N, T)
    probe4 = (1, 2, h // 2, w // 2)
    probe3 = (1, h // 3, w // 2)
    groups = []
    for kind, label, axes, layer in _layers(N_CHANNELS, w, (N_CHANNELS, h, w)):
        layer = layer.to(torch.float64).train()
        forward = _forward(kind, layer, mask)
        x, probe = (
            (maps, probe4)
            if kind in ("batch2d", "ghost2d", "group", "layer_chw", "layer2d")
            else (seq, probe3)
        )
        group = statistics_group(forward, x, probe)
        ref = expected_group(kind, tuple(x.shape), probe, lengths)
        groups.append(
            NormGroup(
                kind,
                label,
                axes,
                x,
                probe,
                group,
                bool(torch.equal(group, ref)),
                mask if kind == "masked1d" else None,
            )
        )
    checks: dict[str, float] = {}
    with torch.no_grad():
        bn = nn.BatchNorm2d(N_CHANNELS, momentum=None).to(torch.float64).train()
        bn(maps)
        checks["batch2d_running_mean_error"] = _gap(bn.running_mean, maps.mean((0, 2, 3)))
        ln = nn.LayerNorm([N_CHANNELS, h, w], elementwise_affine=False).to(torch.float64)
        mean = maps.mean((1, 2, 3), keepdim=True)
        var = maps.var((1, 2, 3), unbiased=False, keepdim=True)
        closed = (maps - mean) / torch.sqrt(var + ln.eps)
        checks["layer_chw_output_error"] = _gap(ln(maps), closed)
        mbn = MaskedBatchNorm1d(w, momentum=None).to(torch.float64).train()
        mbn(seq, mask)
        checks["masked1d_running_mean_error"] = _gap(mbn.running_mean, seq[mask].mean(0))
    return groups, checks, source


def _gap(a: Tensor | None, b: Tensor) -> float:
    assert a is not None
    return float((a - b).abs().max())


_GROUP_RGB = np.array([0.85, 0.33, 0.10])
_PAD_RGB = np.array([1.0, 1.0, 1.0])


def _tiles(
    values: np.ndarray, group: np.ndarray, real: np.ndarray, probe: tuple[int, ...]
) -> np.ndarray:
    """An RGB mosaic of `(rows, cols, h, w)` tiles with one-pixel white gaps: the data in grey, the group
    in orange, the probe in black, padding in white."""
    rows, cols, h, w = values.shape
    lo, hi = float(values.min()), float(values.max())
    grey = 0.93 - 0.45 * (values - lo) / (hi - lo + 1e-12)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[group] = 0.25 * rgb[group] + 0.75 * _GROUP_RGB
    rgb[~real] = _PAD_RGB
    rgb[probe] = 0.0
    out = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, 3))
    for r in range(rows):
        for c in range(cols):
            out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = rgb[r, c]
    return out


def _draw(ax: object, g: NormGroup) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    x = g.x.detach().numpy()
    group = g.group.numpy()
    if x.ndim == 4:  # rows: samples n, columns: channels c, tiles: H x W
        real = np.ones_like(group)
        image = _tiles(x, group, real, g.probe)
        n, c, h, w = x.shape
        ax.set_xticks(
            [(w + 1) * i + (w - 1) / 2 for i in range(c)], [f"c={i}" for i in range(c)], fontsize=7
        )
        ax.set_yticks(
            [(h + 1) * i + (h - 1) / 2 for i in range(n)], [f"n={i}" for i in range(n)], fontsize=7
        )
    else:  # one row of samples n, each tile T (down) x D (across)
        n, t, d = x.shape
        real = (
            np.ones_like(group)
            if g.mask is None
            else np.repeat(g.mask.numpy()[..., None], d, axis=-1)
        )
        probe = (0, *g.probe)
        image = _tiles(x[None], group[None], real[None], probe)
        ax.set_xticks(
            [(d + 1) * i + (d - 1) / 2 for i in range(n)], [f"n={i}" for i in range(n)], fontsize=7
        )
        ax.set_yticks([0, t - 1], ["t=0", f"t={t - 1}"], fontsize=7)
    ax.imshow(image, interpolation="nearest")
    ax.tick_params(length=0)
    ax.set_title(f"{g.label}\nover {g.axes}: {int(group.sum())} entries", fontsize=8)


@register("norm_axes", 7)
def make_norm_axes(quick: bool, seed: int) -> GalleryFigure:
    """Gallery maker of figure 7 (the same computation in quick mode: it takes well under a second)."""
    groups, checks, source = norm_axes(seed)
    fig = new_figure(15.0, 6.0)
    top, bottom = cast(Any, fig.subfigures(2, 1, height_ratios=[1.25, 0.75]))
    four = [g for g in groups if g.x.dim() == 4]
    three = [g for g in groups if g.x.dim() == 3]
    for ax, g in zip(top.subplots(1, len(four)), four, strict=True):
        _draw(ax, g)
    for ax, g in zip(bottom.subplots(1, len(three)), three, strict=True):
        _draw(ax, g)
    shape4 = "x".join(str(s) for s in four[0].x.shape)
    shape3 = "x".join(str(s) for s in three[0].x.shape)
    top.suptitle(f"(N, C, H, W) = ({shape4.replace('x', ', ')}) feature maps", fontsize=10)
    bottom.suptitle(
        f"(N, T, D) = ({shape3.replace('x', ', ')}) sequences (image rows as tokens; white: padding)",
        fontsize=10,
    )
    numbers: dict[str, float] = dict(checks)
    for g in groups:
        numbers[f"{g.kind}_group_size"] = float(g.group.sum())
        numbers[f"{g.kind}_matches_axes"] = float(g.matches)
    sizes = "; ".join(f"{g.label}: {int(g.group.sum())}" for g in groups)
    all_match = all(g.matches for g in groups)
    caption = (
        f"A real batch of {len(four[0].x)} {source}, as ({shape4.replace('x', ', ')}) feature maps (through a "
        f"fixed random 3x3 convolution to {four[0].x.shape[1]} channels) and as ({shape3.replace('x', ', ')}) "
        f"sequences of image rows, run through each normalization layer in training mode. Orange: the input "
        f"entries on which the output at the black probe entry depends (its derivative with respect to "
        f"them is non-zero), that is, the entries its mean and variance are computed over. Counts: {sizes}. "
        f"{'Every' if all_match else 'Not every'} recovered group equals the layer's documented axes. The "
        f"layers' statistics agree with the closed forms: after one step with momentum=None, BatchNorm2d's "
        f"running_mean differs from the batch mean over (N, H, W) by {checks['batch2d_running_mean_error']:.1e} "
        f"and MaskedBatchNorm1d's from the mean over the real tokens by "
        f"{checks['masked1d_running_mean_error']:.1e}; LayerNorm([C, H, W]) differs from the per-sample "
        f"standardization by {checks['layer_chw_output_error']:.1e}."
    )
    return GalleryFigure(
        "norm_axes", "What BatchNorm and LayerNorm normalize over", fig, caption, numbers
    )
