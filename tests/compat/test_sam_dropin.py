"""Drop-in proof for SAM on models nobody here wrote: Lightning's demo Transformer and a timm ResNet.

Each test trains a model from another project unchanged, once through Lightning with reglight's SAM (the
callback, or the optimizer returned by `configure_optimizers`) and once with the textbook SAM loop written
out here in plain torch (Foret et al., 2021: gradient at $w$, $\\epsilon = \\rho g / \\lVert g\\rVert$, gradient at
$w + \\epsilon$, back to $w$, base step). The weights must agree after several steps. Batch norm's running
statistics, which the textbook loop would update twice per step, are kept from changing in the reference's
second pass the way most SAM code does it (momentum set to 0), independently of reglight's mechanism.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from compat_models import QUIET
from lightning.pytorch.demos.transformer import LightningTransformer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import SAMCallback
from reglight.optim import SAM

RHO = 0.05


def textbook_sam_step(
    params: list[Tensor], opt: torch.optim.Optimizer, loss_fn: Any, second_pass: Any = None
) -> None:
    """One SAM step written out: the reference, sharing no code with reglight."""
    opt.zero_grad()
    loss_fn().backward()
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
        norm = torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))
        for p in params:
            if p.grad is not None:
                p.add_(RHO * p.grad / (norm + 1e-12))
    opt.zero_grad()
    (second_pass or loss_fn)().backward()
    with torch.no_grad():
        for p, w in zip(params, saved):
            p.copy_(w)
    opt.step()


# --------------------------------------------------------------------------------------------------
# Lightning's demo Transformer, its training_step and optimizer unchanged, with SAMCallback
# --------------------------------------------------------------------------------------------------
VOCAB, SEQ, BATCH, STEPS = 40, 8, 4, 3


def token_batches() -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, VOCAB, (BATCH * STEPS, SEQ + 1), generator=g)
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


class DemoTransformer(LightningTransformer):
    """Lightning's demo as shipped; only the data (WikiText-2 needs a download) is replaced."""

    def prepare_data(self) -> None:
        pass

    def train_dataloader(self) -> DataLoader:
        return DataLoader(token_batches(), batch_size=BATCH)


def test_sam_callback_on_lightnings_demo_transformer_equals_the_textbook_loop() -> None:
    torch.manual_seed(0)
    module = DemoTransformer(vocab_size=VOCAB)
    reference = copy.deepcopy(module.model)
    before = [p.detach().clone() for p in module.parameters()]

    torch.manual_seed(1)  # dropout is on: both runs draw the same masks in the same order
    pl.Trainer(max_steps=STEPS, devices=1, callbacks=[SAMCallback(rho=RHO)], **QUIET).fit(module)

    torch.manual_seed(1)
    loader = DataLoader(token_batches(), batch_size=BATCH)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)  # the demo's configure_optimizers
    params = list(reference.parameters())
    reference.train()
    for inputs, target in loader:

        def loss_fn(inputs: Tensor = inputs, target: Tensor = target) -> Tensor:
            return F.nll_loss(reference(inputs, target), target.view(-1))

        textbook_sam_step(params, opt, loss_fn)

    moved = max((p.detach() - q).abs().max().item() for p, q in zip(module.parameters(), before))
    assert moved > 1e-3  # the comparison below is not of untrained weights
    # float32: the two agree to ~5e-6 (4e-7 with dropout off); other dropout masks would differ by ~0.1
    for (name, p), q in zip(module.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-4, atol=5e-5, msg=name)


# --------------------------------------------------------------------------------------------------
# a timm ResNet (batch norm) with reglight.optim.SAM as the optimizer
# --------------------------------------------------------------------------------------------------
def image_batches() -> TensorDataset:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(BATCH * STEPS, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (BATCH * STEPS,), generator=g)
    return TensorDataset(x, y)


class TimmClassifier(pl.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(image_batches(), batch_size=BATCH)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return SAM(self.parameters(), torch.optim.SGD, rho=RHO, model=self, lr=0.05, momentum=0.9)


def test_sam_optimizer_on_a_timm_resnet_equals_the_textbook_loop() -> None:
    """Weights, and batch-norm statistics updated by the first pass of each step only."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=3).double()
    reference = copy.deepcopy(net)
    module = TimmClassifier(net)
    pl.Trainer(max_steps=STEPS, devices=1, precision="64-true", **QUIET).fit(module)

    norms = [m for m in reference.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms, "resnet10t has batch norm"
    opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    params = list(reference.parameters())
    reference.train()
    for x, y in DataLoader(image_batches(), batch_size=BATCH):

        def loss_fn(x: Tensor = x, y: Tensor = y) -> Tensor:
            return F.cross_entropy(reference(x), y)

        def frozen_stats_pass(x: Tensor = x, y: Tensor = y) -> Tensor:
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
            try:
                return loss_fn(x, y)
            finally:
                for m, momentum in zip(norms, momenta):
                    m.momentum = momentum

        textbook_sam_step(params, opt, loss_fn, frozen_stats_pass)

    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-10, atol=1e-12, msg=name)
    ours = dict(net.named_buffers())
    for name, buf in reference.named_buffers():
        if name.endswith("num_batches_tracked"):
            # the reference's second pass still counts (momentum 0 keeps only the averages): 2 per step
            assert buf.item() == 2 * STEPS and ours[name].item() == STEPS, name
        else:
            torch.testing.assert_close(ours[name], buf, rtol=1e-10, atol=1e-12, msg=name)
