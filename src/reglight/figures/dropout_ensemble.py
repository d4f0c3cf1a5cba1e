r"""Gallery figure 4: dropout as an ensemble of $2^n$ sub-networks.

A small MLP on scikit-learn's digits has one [Dropout][reglight.nn.Dropout] layer of $n$ units in front
of its linear output layer, so its $2^n$ sub-networks (one per mask $z \in \{0, 1\}^n$, of probability
$(1-p)^{|z|}p^{n-|z|}$) can be enumerated. The figure compares, on the held-out digits:

- the weight-scaling rule of both conventions: inverted (torch's; identity at evaluation) and classic
  (Srivastava et al., 2014; the output layer trained on unscaled masks, $\times(1-p)$ at evaluation),
  which give the same predictions when the weights are converted consistently ($W_{\text{classic}} =
  W/(1-p)$), and a mismatched rule (classic evaluation of inverted weights);
- Monte-Carlo dropout ([mc_predict][reglight.nn.mc_predict]): the average of the softmax over $k$
  sampled masks, $k = 1 \dots 2^n$;
- the exact ensembles over all $2^n$ masks: the arithmetic mean of the softmax, which MC dropout
  estimates, and the normalized geometric mean, which equals the weight-scaling rule exactly here
  because the dropped units feed a linear layer followed by a softmax (Baldi & Sadowski, 2013).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from reglight._threads import torch_threads
from reglight.figures._base import GalleryFigure, register
from reglight.figures._style import new_figure
from reglight.nn import Dropout, mc_dropout, mc_predict

__all__ = ["DropoutEnsemble", "all_masks", "dropout_ensemble", "make_dropout_ensemble"]


def all_masks(n: int) -> Tensor:
    """The $2^n$ binary masks of `n` units, (2^n, n) float64, in binary counting order.

    Examples:
        >>> all_masks(2).tolist()
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    """
    codes = torch.arange(2**n).unsqueeze(1)
    return ((codes >> torch.arange(n)) & 1).to(torch.float64)


@dataclass
class DropoutEnsemble:
    """The trained model and every prediction rule's numbers.

    Attributes:
        model: `Sequential(features, Dropout, head)`, trained.
        x_test: Held-out inputs.
        y_test: Held-out labels.
        p: Drop probability.
        n_units: Units under dropout ($2^n$ sub-networks).
        accuracy: Test accuracy by rule: `inverted`, `classic`, `mismatched`, `exact_arithmetic`,
            `exact_geometric`.
        max_logit_gap_classic: Largest |logit difference| between the inverted and the converted classic
            network at evaluation.
        max_prob_gap_geometric: Largest |probability difference| between weight scaling and the exact
            normalized geometric mean.
        exact_probs: The exact arithmetic-mean ensemble, (n_test, n_classes).
        ks: Numbers of sampled masks.
        mc_accuracy: Accuracy of the MC average, (repeats, len(ks)).
        mc_distance: Mean total-variation distance of the MC average to the exact arithmetic ensemble,
            (repeats, len(ks)).
        slope: Slope of log(mean distance) against log k (about -1/2 for a Monte-Carlo average).
    """

    model: nn.Sequential
    x_test: Tensor
    y_test: Tensor
    p: float
    n_units: int
    accuracy: dict[str, float]
    max_logit_gap_classic: float
    max_prob_gap_geometric: float
    exact_probs: Tensor
    ks: np.ndarray
    mc_accuracy: np.ndarray
    mc_distance: np.ndarray
    slope: float


def _digits(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits scaled to [0, 1], split 75/25 by a seeded permutation."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = len(y) // 4
    test, train = order[:n_test], order[n_test:]
    x = torch.as_tensor(X / 16.0, dtype=torch.float64)
    labels = torch.as_tensor(y)
    return x[train], x[test], labels[train], labels[test]


def _train(x: Tensor, y: Tensor, n_units: int, p: float, epochs: int, seed: int) -> nn.Sequential:
    """Full-batch Adam in float32; the trained model is returned in float64, in evaluation mode."""
    torch.manual_seed(seed)
    features = nn.Sequential(
        nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, n_units), nn.ReLU()
    )
    model = nn.Sequential(features, Dropout(p), nn.Linear(n_units, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    x32 = x.float()
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x32), y).backward()
        optimizer.step()
    return model.to(torch.float64).eval()


def _accuracy(scores: Tensor, y: Tensor) -> float:
    return float((scores.argmax(-1) == y).double().mean())


def dropout_ensemble(
    n_units: int = 10,
    p: float = 0.5,
    epochs: int = 300,
    repeats: int = 8,
    seed: int = 0,
) -> DropoutEnsemble:
    """Train the MLP and evaluate weight scaling, MC dropout and the exact ensembles on the test digits.

    Args:
        n_units: Units of the dropout layer ($2^n$ sub-networks; MC runs up to $k = 2^n$).
        p: Drop probability.
        epochs: Full-batch Adam steps.
        repeats: Independent MC runs per $k$ (for the spread and the mean distance).
        seed: Seed of the split, the initialization, the training masks and the MC masks.

    Returns:
        The model and the measured numbers.
    """
    with torch_threads(1):
        return _dropout_ensemble(n_units, p, epochs, repeats, seed)


def _dropout_ensemble(
    n_units: int, p: float, epochs: int, repeats: int, seed: int
) -> DropoutEnsemble:
    x_tr, x_te, y_tr, y_te = _digits(seed)
    model = _train(x_tr, y_tr, n_units, p, epochs, seed)
    features, head = model[0], model[2]
    assert isinstance(head, nn.Linear)
    with torch.no_grad():
        logits_inverted = model(x_te)
        # the same network in the classic convention: unscaled masks, output weights W / (1 - p)
        classic = copy.deepcopy(model)
        classic[1] = Dropout(p, scaling="classic")
        classic_head = classic[2]
        assert isinstance(classic_head, nn.Linear)
        classic_head.weight.div_(1 - p)
        logits_classic = classic.eval()(x_te)
        mismatched = copy.deepcopy(model)
        mismatched[1] = Dropout(p, scaling="classic")
        logits_mismatched = mismatched.eval()(x_te)
        # every sub-network: the head on the masked, inverted-scaled hidden units
        h = features(x_te)  # (N, n)
        masks = all_masks(n_units)
        weights = (1 - p) ** masks.sum(1) * p ** (n_units - masks.sum(1))  # sums to 1
        sub_logits = head(h.unsqueeze(0) * masks.unsqueeze(1) / (1 - p))  # (2^n, N, C)
        log_probs = sub_logits.log_softmax(-1)
        exact = torch.einsum("m,mnc->nc", weights, log_probs.exp())
        geometric = torch.einsum("m,mnc->nc", weights, log_probs).softmax(-1)
    accuracy = {
        "inverted": _accuracy(logits_inverted, y_te),
        "classic": _accuracy(logits_classic, y_te),
        "mismatched": _accuracy(logits_mismatched, y_te),
        "exact_arithmetic": _accuracy(exact, y_te),
        "exact_geometric": _accuracy(geometric, y_te),
    }
    ks = 2 ** np.arange(n_units + 1)
    mc_acc = np.empty((repeats, len(ks)))
    mc_dist = np.empty((repeats, len(ks)))
    softmax = lambda z: z.softmax(-1)  # noqa: E731
    # MC dropout on the layers from the dropout on: the features before it are deterministic, so the
    # samples are those of the whole model at a fraction of the cost
    top = model[1:]
    for r in range(repeats):
        torch.manual_seed(seed * 1000 + r + 1)
        for j, k in enumerate(ks.tolist()):
            if k == 1:
                with torch.no_grad(), mc_dropout(top):
                    mean = top(h).softmax(-1)
            else:
                mean, _ = mc_predict(top, h, samples=k, transform=softmax)
            mc_acc[r, j] = _accuracy(mean, y_te)
            mc_dist[r, j] = float(0.5 * (mean - exact).abs().sum(-1).mean())
    slope = float(np.polyfit(np.log(ks), np.log(mc_dist.mean(0)), 1)[0])
    return DropoutEnsemble(
        model=model,
        x_test=x_te,
        y_test=y_te,
        p=p,
        n_units=n_units,
        accuracy=accuracy,
        max_logit_gap_classic=float((logits_classic - logits_inverted).abs().max()),
        max_prob_gap_geometric=float((logits_inverted.softmax(-1) - geometric).abs().max()),
        exact_probs=exact,
        ks=ks,
        mc_accuracy=mc_acc,
        mc_distance=mc_dist,
        slope=slope,
    )


@register("dropout_ensemble", 4)
def make_dropout_ensemble(quick: bool, seed: int) -> GalleryFigure:
    """Gallery maker of figure 4 (quick: 8 units, 200 epochs, 4 repeats)."""
    if quick:
        data = dropout_ensemble(n_units=8, epochs=200, repeats=4, seed=seed)
    else:
        data = dropout_ensemble(n_units=10, epochs=300, repeats=8, seed=seed)
    acc = data.accuracy
    fig = new_figure(11.0, 4.0)
    ax, ax2 = fig.subplots(1, 2)
    m, s = data.mc_accuracy.mean(0), data.mc_accuracy.std(0)
    ax.plot(data.ks, m, "o-", color="#1f77b4", ms=4, label="MC dropout, k sampled masks")
    ax.fill_between(data.ks, m - s, m + s, color="#1f77b4", alpha=0.2, lw=0)
    lines = [
        ("exact_arithmetic", f"exact ensemble of 2^{data.n_units} (arithmetic)", "#2ca02c", "-"),
        ("inverted", "weight scaling, inverted = geometric ens.", "#d62728", "--"),
        ("classic", "weight scaling, classic (consistent)", "k", ":"),
        ("mismatched", "classic rule on inverted weights", "#9467bd", "-."),
    ]
    for key, label, color, style in lines:
        ax.axhline(acc[key], color=color, ls=style, lw=1.3, label=f"{label}: {acc[key]:.3f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (sampled sub-networks)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"digits, MLP with dropout p={data.p} on {data.n_units} units", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    d = data.mc_distance.mean(0)
    ax2.loglog(data.ks, d, "o-", color="#1f77b4", ms=4, label="MC average vs exact ensemble")
    ax2.loglog(data.ks, d[0] / np.sqrt(data.ks), "k--", lw=1, label="1/√k")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("k (sampled sub-networks)")
    ax2.set_ylabel("mean total-variation distance")
    ax2.set_title(f"convergence to the exact ensemble (slope {data.slope:.2f})", fontsize=10)
    ax2.legend(fontsize=8)
    numbers = {f"accuracy_{k}": v for k, v in acc.items()}
    numbers |= {
        "p": data.p,
        "n_units": float(data.n_units),
        "n_test": float(len(data.y_test)),
        "max_logit_gap_classic": data.max_logit_gap_classic,
        "max_prob_gap_geometric": data.max_prob_gap_geometric,
        "mc_accuracy_k1": float(m[0]),
        "mc_accuracy_kmax": float(m[-1]),
        "distance_k1": float(d[0]),
        "distance_kmax": float(d[-1]),
        "slope": data.slope,
    }
    caption = (
        f"An MLP (64-32-{data.n_units}-10) trained on scikit-learn's digits with `reglight.nn.Dropout` "
        f"(p = {data.p}) on its last {data.n_units} hidden units, tested on {len(data.y_test)} held-out "
        f"digits. Weight scaling gives accuracy {acc['inverted']:.3f} in the inverted convention and "
        f"{acc['classic']:.3f} in the classic one with consistently converted weights (largest logit "
        f"difference {data.max_logit_gap_classic:.1e}); the classic ×(1−p) rule applied to inverted "
        f"weights gives {acc['mismatched']:.3f}. Enumerating all 2^{data.n_units} = {2**data.n_units} "
        f"sub-networks: the arithmetic mean of their softmax reaches {acc['exact_arithmetic']:.3f}, the "
        f"normalized geometric mean {acc['exact_geometric']:.3f} and equals weight scaling (largest "
        f"probability difference {data.max_prob_gap_geometric:.1e}). MC dropout (`mc_predict`, "
        f"{data.mc_accuracy.shape[0]} runs per k) goes from {m[0]:.3f} with one mask to {m[-1]:.3f} with "
        f"{data.ks[-1]}; its mean total-variation distance to the exact ensemble falls from {d[0]:.3f} "
        f"to {d[-1]:.4f}, with slope {data.slope:.2f} in log-log (−1/2 for a Monte-Carlo average)."
    )
    return GalleryFigure("dropout_ensemble", "Dropout as an ensemble", fig, caption, numbers)
