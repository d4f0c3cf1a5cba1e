"""The LightningModule of the Transformer recipe."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from typing_extensions import override

from reglight._validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_probability,
)

from .data import IGNORE_INDEX
from .network import NORM_POSITIONS, NORMS, POSITIONS, MiniTransformer, TokenNorm

__all__ = ["TransformerClassifier", "weight_decay_groups"]

_NORM_TYPES = (TokenNorm, nn.LayerNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)


def weight_decay_groups(
    net: nn.Module,
    weight_decay: float,
    decay_embeddings: bool = False,
    decay_norms_and_biases: bool = False,
) -> list[dict[str, Any]]:
    """Parameter groups of AdamW: weight matrices decayed; norms, biases and embeddings not.

    Embeddings (token and position tables) join the decayed group with `decay_embeddings=True`, as grokking
    studies train (Power et al., 2022; Nanda et al., 2023).

    Args:
        net: The network.
        weight_decay: Decoupled weight decay of the `"decay"` group.
        decay_embeddings: Decay the embedding tables too.
        decay_norms_and_biases: Decay the norms' parameters and the biases too (every parameter is decayed
            with `decay_embeddings=True` as well: what AdamW does when given `model.parameters()`).

    Returns:
        Two groups, `{"name": "decay", ...}` and `{"name": "no_decay", "weight_decay": 0.0, ...}` (an empty
        group is left out).

    Examples:
        >>> from reglight.recipes.transformer import MiniTransformer
        >>> net = MiniTransformer(vocab_size=10, num_classes=5, max_len=4, d_model=8, heads=2)
        >>> [(g["name"], len(g["params"])) for g in weight_decay_groups(net, 1.0)]
        [('decay', 5), ('no_decay', 13)]
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in net.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, nn.Embedding):
                skip = not decay_embeddings
            else:
                skip = not decay_norms_and_biases and (
                    isinstance(module, _NORM_TYPES) or name == "bias" or param.ndim < 2
                )
            (no_decay if skip else decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


class TransformerClassifier(pl.LightningModule):
    """A small decoder-only Transformer trained to classify tokens, with its regularizers as options.

    Works with both datamodules of the recipe: modular arithmetic batches `(tokens, answers)` are scored at
    the last (`=`) position; padded sequence batches `(tokens, targets, mask)` at every real token
    (targets [IGNORE_INDEX][reglight.recipes.transformer.data.IGNORE_INDEX] elsewhere), with the mask passed
    to attention and to masked batch norm. The network is
    [MiniTransformer][reglight.recipes.transformer.MiniTransformer]; `vocab_size`, `num_classes` and
    `max_len` come from the datamodule (`vocab_size`, `num_classes`, `max_positions`) unless given.

    Optimizer: AdamW with decoupled weight decay on the weight matrices only
    ([weight_decay_groups][reglight.recipes.transformer.weight_decay_groups]), a linear warm-up over
    `warmup_steps` optimizer steps, then a constant or cosine learning rate.

    Logs, per optimizer step, `train/loss`, `train/acc` and `train/weight_norm` (the L2 norm of all
    parameters, taken on device without a host sync); per validation run `val/loss` and `val/acc`; per test
    run `test/loss` and `test/acc` (accuracy over scored tokens).

    Args:
        d_model: Width.
        depth: Number of blocks.
        heads: Attention heads.
        mlp_ratio: MLP hidden width as a multiple of `d_model`.
        norm: `"layer"`, `"rms"`, `"batch"` (padding masked out of the statistics), `"batch_unmasked"` or
            `"none"`.
        norm_position: `"pre"` or `"post"`.
        positions: `"learned"` or `"sinusoidal"`.
        attn_dropout: Dropout on the attention weights.
        resid_dropout: Dropout on every residual branch.
        embed_dropout: Dropout on the embeddings.
        drop_path: Largest DropPath rate (linear in depth).
        lr: Peak learning rate.
        betas: AdamW's betas.
        weight_decay: Decoupled weight decay of the weight matrices.
        decay_embeddings: Decay the embedding tables too.
        decay_norms_and_biases: Decay the norms' parameters and the biases too.
        embed_init_std: Standard deviation of the normal initialization of the embedding tables.
        warmup_steps: Linear warm-up length in optimizer steps (0: none).
        lr_schedule: `"constant"` after warm-up, or `"cosine"` decay to 0 at the last step.
        label_smoothing: Label smoothing of the cross-entropy.
        vocab_size: Input tokens; `None` takes it from the datamodule.
        num_classes: Output classes; `None` takes it from the datamodule.
        max_len: Position-table size; `None` takes the datamodule's `max_positions`.

    Examples:
        >>> import torch
        >>> model = TransformerClassifier(d_model=16, heads=2, vocab_size=13, num_classes=7, max_len=4)
        >>> model(torch.randint(0, 13, (5, 4))).shape
        torch.Size([5, 4, 7])
    """

    def __init__(
        self,
        d_model: int = 128,
        depth: int = 1,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        norm: Literal["layer", "rms", "batch", "batch_unmasked", "none"] = "layer",
        norm_position: Literal["pre", "post"] = "pre",
        positions: Literal["learned", "sinusoidal"] = "learned",
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        drop_path: float = 0.0,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.98),
        weight_decay: float = 1.0,
        decay_embeddings: bool = False,
        decay_norms_and_biases: bool = False,
        embed_init_std: float = 1.0,
        warmup_steps: int = 10,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        label_smoothing: float = 0.0,
        vocab_size: int | None = None,
        num_classes: int | None = None,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("depth", depth)
        check_positive_int("heads", heads)
        if d_model % heads:
            raise ValueError(f"`heads` must divide d_model={d_model}, got heads={heads}")
        check_positive("mlp_ratio", mlp_ratio)
        check_choice("norm", norm, NORMS)
        check_choice("norm_position", norm_position, NORM_POSITIONS)
        check_choice("positions", positions, POSITIONS)
        for name, value in (
            ("attn_dropout", attn_dropout),
            ("resid_dropout", resid_dropout),
            ("embed_dropout", embed_dropout),
            ("drop_path", drop_path),
            ("label_smoothing", label_smoothing),
        ):
            check_probability(name, value)
        check_positive("lr", lr)
        check_positive("embed_init_std", embed_init_std)
        if len(betas) != 2:
            raise ValueError(f"`betas` must be two numbers in [0, 1), got {betas!r}")
        for beta in betas:
            check_probability("betas", beta)
        check_nonnegative("weight_decay", weight_decay)
        check_positive_int("warmup_steps", warmup_steps, minimum=0)
        check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
        for name, size in (
            ("vocab_size", vocab_size),
            ("num_classes", num_classes),
            ("max_len", max_len),
        ):
            if size is not None:
                check_positive_int(name, size)
        self.save_hyperparameters()
        self.net: MiniTransformer | None = None
        self.val_loss, self.val_acc = MeanMetric(), MeanMetric()
        self.test_loss, self.test_acc = MeanMetric(), MeanMetric()
        if None not in (vocab_size, num_classes, max_len):
            self._build()

    def _build(self) -> None:
        hp = self.hparams
        self.net = MiniTransformer(
            vocab_size=hp["vocab_size"],
            num_classes=hp["num_classes"],
            max_len=hp["max_len"],
            d_model=hp["d_model"],
            depth=hp["depth"],
            heads=hp["heads"],
            mlp_ratio=hp["mlp_ratio"],
            norm=hp["norm"],
            norm_position=hp["norm_position"],
            positions=hp["positions"],
            attn_dropout=hp["attn_dropout"],
            resid_dropout=hp["resid_dropout"],
            embed_dropout=hp["embed_dropout"],
            drop_path=hp["drop_path"],
            embed_init_std=hp["embed_init_std"],
        )

    @override
    def setup(self, stage: str) -> None:
        """Take `vocab_size`, `num_classes` and `max_len` from the datamodule and build the network."""
        if self.net is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        for key, attr in (
            ("vocab_size", "vocab_size"),
            ("num_classes", "num_classes"),
            ("max_len", "max_positions"),
        ):
            if self.hparams[key] is None:
                value = getattr(datamodule, attr, None)
                if value is None:
                    raise ValueError(
                        f"TransformerClassifier needs `{key}`, as an argument or from a datamodule with a "
                        f"`{attr}` attribute (ModularArithmeticDataModule, RunningMaxDataModule)"
                    )
                self.hparams[key] = int(value)
        self._build()

    # ----------------------------------------------------------------------------------------- steps

    @override
    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits `(N, T, num_classes)`; `mask` `(N, T)` is true on real tokens (`None`: no padding)."""
        if self.net is None:
            raise RuntimeError("the network is built in `setup()` (or when its sizes are given)")
        return self.net(tokens, mask)

    def scores(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Logits `(M, num_classes)` and targets `(M,)` of the scored tokens of a batch.

        Modular arithmetic `(tokens, answers)`: the last position of each sequence. Padded sequences
        `(tokens, targets, mask)`: every position (targets `IGNORE_INDEX` on padding).
        """
        if len(batch) == 2:
            tokens, answers = batch
            assert self.net is not None
            return self.net(tokens, last_only=True), answers
        tokens, targets, mask = batch
        logits = self(tokens, mask)
        return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)

    def _loss_acc(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        logits, targets = self.scores(batch)
        loss = F.cross_entropy(
            logits,
            targets,
            ignore_index=IGNORE_INDEX,
            label_smoothing=float(self.hparams["label_smoothing"]),
        )
        valid = targets != IGNORE_INDEX
        count = valid.sum()
        correct = ((logits.argmax(-1) == targets) & valid).sum()
        return loss, correct / count.clamp_min(1), count

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, acc, _ = self._loss_acc(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc", acc, on_step=True, on_epoch=False)
        self.log("train/weight_norm", self.weight_norm(), on_step=True, on_epoch=False)
        return loss

    def weight_norm(self) -> Tensor:
        r"""$\lVert\theta\rVert_2$ over every parameter of the network (a tensor, no host sync)."""
        assert self.net is not None
        params = [p.detach() for p in self.net.parameters()]
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, acc, count = self._loss_acc(batch)
        self.val_loss.update(loss, count)
        self.val_acc.update(acc, count)
        self.log("val/loss", self.val_loss, prog_bar=False)
        self.log("val/acc", self.val_acc, prog_bar=True)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, acc, count = self._loss_acc(batch)
        self.test_loss.update(loss, count)
        self.test_acc.update(acc, count)
        self.log("test/loss", self.test_loss)
        self.log("test/acc", self.test_acc)

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities `(N, T, num_classes)`."""
        tokens, mask = batch[0], (batch[2] if len(batch) == 3 else None)
        return self(tokens, mask).softmax(-1)

    # ------------------------------------------------------------------------------------- optimizer

    @override
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if self.net is None:
            raise RuntimeError("the network is built in `setup()`; call fit through a Trainer")
        groups = weight_decay_groups(
            self.net, hp["weight_decay"], hp["decay_embeddings"], hp["decay_norms_and_biases"]
        )
        opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=tuple(hp["betas"]))
        warmup = int(hp["warmup_steps"])
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 0
        cosine = hp["lr_schedule"] == "cosine" and 0 < total < math.inf

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            done = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * done))

        if warmup == 0 and not cosine:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
