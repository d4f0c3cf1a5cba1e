"""Bad input raises an error that names the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglight.penalties import L1, L2, ElasticNet, GroupLasso, soft_threshold_


@pytest.mark.parametrize("cls", [L1, L2, ElasticNet, GroupLasso])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "1", None])
def test_bad_strength(cls: type, bad: object) -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        cls(bad)


def test_strength_is_validated_when_set_and_accepts_numpy() -> None:
    penalty = L1(0.1)
    penalty.alpha = np.float32(0.25)
    assert penalty.alpha == 0.25 and type(penalty.alpha) is float
    with pytest.raises(ValueError, match="`alpha` must be a finite number >= 0, got -1"):
        penalty.alpha = -1


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_bad_l1_ratio(bad: float) -> None:
    with pytest.raises(ValueError, match="`l1_ratio`"):
        ElasticNet(0.1, l1_ratio=bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, [0.1, 0.0], float("nan")])
def test_non_positive_step(bad: object) -> None:
    p = [torch.ones(3), torch.ones(2)]
    for penalty in (L1(0.1), GroupLasso(0.1)):
        with pytest.raises(ValueError, match="`step`"):
            penalty.prox_(p, bad)  # type: ignore[arg-type]


def test_step_count_and_type() -> None:
    with pytest.raises(ValueError, match="`step` must have one entry per tensor"):
        L1(0.1).prox_([torch.ones(3)], [0.1, 0.2])
    with pytest.raises(TypeError, match="`step`"):
        L1(0.1).prox_([torch.ones(3)], torch.tensor(0.1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`threshold`"):
        soft_threshold_([torch.ones(3)], -1.0)
    with pytest.raises(TypeError, match="`params`"):
        L1(0.1).value([torch.ones(2), 3.0])  # type: ignore[list-item]
