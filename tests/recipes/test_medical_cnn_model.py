"""Metrics against medmnist's own Evaluator, the network and the LightningModule's pieces."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC

from reglight.recipes.medical_cnn import (
    DeepEnsemble,
    MedicalCNN,
    SmallCNN,
    average_logits,
    medmnist_confusion_matrix,
    medmnist_inputs,
    medmnist_metric_collection,
    medmnist_metrics,
)


def _random_task(task: str, n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if task == "multi-label, binary-class":
        target = (torch.rand(n, k, generator=g) < 0.4).long()
        logits = 1.5 * target + torch.randn(n, k, generator=g)
    else:
        target = torch.randint(0, k, (n,), generator=g)
        logits = torch.randn(n, k, generator=g) + 1.2 * torch.nn.functional.one_hot(target, k)
    return logits, target


@pytest.mark.parametrize(
    ("task", "k"),
    [
        ("binary-class", 2),
        ("multi-class", 5),
        ("ordinal-regression", 5),
        ("multi-label, binary-class", 4),
    ],
)
def test_metrics_match_medmnist_evaluator(task: str, k: int) -> None:
    """AUC and ACC equal medmnist's getAUC/getACC (sklearn) on the softmax / sigmoid scores."""
    for seed in range(3):
        logits, target = _random_task(task, 97, k, seed)
        scores = logits.sigmoid() if task.startswith("multi-label") else logits.softmax(-1)
        y = target.numpy() if task.startswith("multi-label") else target.numpy()[:, None]
        expected_auc = getAUC(y, scores.numpy(), task)
        expected_acc = getACC(y, scores.numpy(), task)
        got = medmnist_metrics(logits, target, task)
        assert got["auc"] == pytest.approx(expected_auc, abs=1e-6)
        assert got["acc"] == pytest.approx(expected_acc, abs=1e-6)


def test_metrics_accumulate_over_batches() -> None:
    logits, target = _random_task("multi-class", 120, 4, 0)
    m = medmnist_metric_collection("multi-class", 4, prefix="val/")
    cm = medmnist_confusion_matrix("multi-class", 4)
    for i in range(0, 120, 25):
        inputs = medmnist_inputs(logits[i : i + 25], target[i : i + 25], "multi-class")
        m.update(*inputs)
        cm.update(*inputs)
    whole = medmnist_metrics(logits, target, "multi-class")
    got = m.compute()
    assert set(got) == {"val/auc", "val/acc"}
    assert float(got["val/auc"]) == pytest.approx(whole["auc"], abs=1e-6)
    assert float(got["val/acc"]) == pytest.approx(whole["acc"], abs=1e-6)
    from sklearn.metrics import confusion_matrix

    expected = confusion_matrix(target.numpy(), logits.argmax(-1).numpy(), labels=range(4))
    np.testing.assert_array_equal(cm.compute().numpy(), expected)


def test_binary_confusion_thresholds_positive_score_at_half() -> None:
    logits = torch.tensor([[0.0, 0.1], [0.3, 0.0], [0.0, 2.0], [1.0, 0.0]])
    target = torch.tensor([1, 1, 0, 0])
    cm = medmnist_confusion_matrix("binary-class", 2)
    cm.update(*medmnist_inputs(logits, target, "binary-class"))
    from sklearn.metrics import confusion_matrix

    expected = confusion_matrix(target.numpy(), (logits.softmax(-1)[:, 1] > 0.5).long().numpy())
    assert cm.compute().tolist() == expected.tolist() == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match="num_classes"):
        medmnist_metric_collection("binary-class", 3)
    with pytest.raises(ValueError, match="task"):
        medmnist_metric_collection("regression", 3)
    with pytest.raises(ValueError, match="num_classes"):
        medmnist_confusion_matrix("multi-class", 1)


def test_small_cnn_depth_width_and_dropout() -> None:
    net = SmallCNN(
        in_channels=3, num_classes=7, depth=4, width=8, blocks_per_stage=2, hidden=32, dropout=0.3
    )
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert net.fc.in_features == 64 and net.head.out_features == 7
    assert net.dropout.p == 0.3
    assert net(torch.randn(2, 3, 28, 28)).shape == (2, 7)
    deep = SmallCNN(depth=6, width=4)  # ceil-mode pooling: 28 -> 14 -> 7 -> 4 -> 2 -> 1 -> 1
    assert deep(torch.randn(2, 1, 28, 28)).shape == (2, 2)
    net.eval()
    x = torch.randn(2, 3, 28, 28)
    assert torch.equal(net(x), net(x))
    with pytest.raises(ValueError, match="`depth`"):
        SmallCNN(depth=0)
    with pytest.raises(ValueError, match="`dropout`"):
        SmallCNN(dropout=1.0)
    with pytest.raises(ValueError, match="`norm`"):
        SmallCNN(norm="instance")


def test_weight_decay_only_on_conv_and_linear_weights() -> None:
    model = MedicalCNN(
        task="binary-class", num_classes=2, in_channels=1, width=8, weight_decay=0.01
    )
    opt = model.configure_optimizers()
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"])
    assert all(p.ndim == 1 for p in plain["params"])
    n_params = sum(1 for _ in model.parameters())
    assert len(decayed["params"]) + len(plain["params"]) == n_params


def test_loss_follows_task() -> None:
    model = MedicalCNN(task="multi-label, binary-class", num_classes=3, in_channels=1, width=4)
    logits = torch.randn(5, 3)
    target = (torch.rand(5, 3) > 0.5).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(model.loss(logits, target), expected)
    model = MedicalCNN(
        task="multi-class", num_classes=3, in_channels=1, width=4, label_smoothing=0.1
    )
    t = torch.tensor([0, 2, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, t, label_smoothing=0.1)
    assert torch.allclose(model.loss(logits, t), expected)


def test_model_validates_arguments() -> None:
    with pytest.raises(ValueError, match="`lr`"):
        MedicalCNN(lr=0.0)
    with pytest.raises(ValueError, match="`optimizer`"):
        MedicalCNN(optimizer="lbfgs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`width`"):
        MedicalCNN(width=0)
    with pytest.raises(ValueError, match="`task`"):
        MedicalCNN(task="segmentation")
    # the architecture's arguments are checked at construction, before any network exists
    for kwargs, name in [
        ({"depth": 0}, "depth"),
        ({"blocks_per_stage": 0}, "blocks_per_stage"),
        ({"hidden": -1}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropblock": -0.1}, "dropblock"),
        ({"block_size": 0}, "block_size"),
        ({"norm": "instance"}, "norm"),
        ({"virtual_batch_size": 0}, "virtual_batch_size"),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            MedicalCNN(**kwargs)  # type: ignore[arg-type]
    assert MedicalCNN().net is None  # built in `setup`, from the datamodule's task


@pytest.mark.parametrize("task", ["binary-class", "multi-label, binary-class"])
def test_tta_averages_the_mirror_image_probabilities(task: str) -> None:
    model = MedicalCNN(
        task=task, num_classes=3 if "label" in task else 2, in_channels=1, width=4, tta=True
    )
    model.eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        out = model.evaluate(x)
        a, b = model(x), model(x.flip(-1))
        assert torch.allclose(out, model.evaluate(x.flip(-1)), atol=1e-6)  # mirror invariant
    if task == "binary-class":
        assert torch.allclose(out.softmax(-1), (a.softmax(-1) + b.softmax(-1)) / 2, atol=1e-6)
    else:
        assert torch.allclose(out.sigmoid(), (a.sigmoid() + b.sigmoid()) / 2, atol=1e-6)
    model.hparams["tta"] = False
    with torch.no_grad():
        assert torch.equal(model.evaluate(x), a)


def test_ema_weights_follow_the_exponential_average_and_are_used_for_evaluation() -> None:
    model = MedicalCNN(task="binary-class", num_classes=2, in_channels=1, width=4, ema_decay=0.75)
    assert model.ema_net is not None and model.net is not None
    assert not any(p.requires_grad for p in model.ema_net.parameters())
    w = model.net.head.weight
    first = w.detach().clone()
    model.on_train_batch_end(None, None, 0)  # the first update copies the weights
    with torch.no_grad():
        w.add_(1.0)
    model.on_train_batch_end(None, None, 1)
    expected = 0.75 * first + 0.25 * (first + 1.0)
    assert torch.allclose(model.ema_net.module.head.weight, expected, atol=1e-6)
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model.evaluate(x), model.ema_net.module(x))
        assert not torch.allclose(model.evaluate(x), model(x))
    opt = model.configure_optimizers()
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in model.ema_net.parameters()}


def test_mixup_mixes_images_and_losses_with_one_beta_draw() -> None:
    model = MedicalCNN(task="multi-class", num_classes=3, in_channels=1, width=4, mixup=0.4).eval()
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(7)
    with pytest.warns(UserWarning, match="self.log"), torch.no_grad():
        loss = model.training_step((x, y), 0)
    torch.manual_seed(7)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(6)
    with torch.no_grad():
        logits = model(lam * x + (1 - lam) * x[perm])
    ce = torch.nn.functional.cross_entropy
    expected = lam * ce(logits, y) + (1 - lam) * ce(logits, y[perm])
    assert 0.0 < lam < 1.0
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="mixup"):
        MedicalCNN(mixup=-1.0)


def test_ensemble_members_take_the_steps_they_would_take_alone() -> None:
    """Sum of the members' losses: each member's Adam (+ coupled L2) steps equal a lone run's."""
    torch.manual_seed(0)
    model = MedicalCNN(
        task="binary-class", num_classes=2, in_channels=1, width=4, dropout=0.0, ensemble=3
    )
    assert isinstance(model.net, DeepEnsemble) and len(model.net.members) == 3
    alone = [copy.deepcopy(m) for m in model.net.members]
    # members start from their own initializations
    assert not torch.equal(alone[0].head.weight, alone[1].head.weight)
    model.trainer = None  # type: ignore[assignment]
    opt = model.configure_optimizers()
    refs = []
    for net in alone:
        decay = [p for n, p in net.named_parameters() if p.ndim > 1 and not n.endswith(".bias")]
        rest = [p for n, p in net.named_parameters() if p.ndim <= 1 or n.endswith(".bias")]
        refs.append(
            torch.optim.Adam(
                [{"params": decay, "weight_decay": 1e-3}, {"params": rest, "weight_decay": 0.0}],
                lr=1e-3,
            )
        )
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 2, (8,), generator=g)
        opt.zero_grad()
        with pytest.warns(UserWarning, match="self.log"):
            model.training_step((x, y), step).backward()
        opt.step()
        for net, ref in zip(alone, refs):
            ref.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            ref.step()
    for member, net in zip(model.net.members, alone):
        for (name, p), q in zip(member.named_parameters(), net.parameters()):
            assert torch.allclose(p, q, atol=1e-6), name
    model.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        expected = torch.stack([net.eval()(x).softmax(-1) for net in alone]).mean(0)
        assert torch.allclose(model.evaluate(x).softmax(-1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="`ensemble`"):
        MedicalCNN(ensemble=0)


def test_average_logits_averages_probabilities() -> None:
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    p = average_logits([a, b]).softmax(-1)
    assert torch.allclose(p, (a.softmax(-1) + b.softmax(-1)) / 2, atol=1e-6)
    q = average_logits([a, b], multilabel=True).sigmoid()
    assert torch.allclose(q, (a.sigmoid() + b.sigmoid()) / 2, atol=1e-5)
    assert average_logits([a]) is a
    with pytest.raises(ValueError, match="`logits`"):
        average_logits([])
