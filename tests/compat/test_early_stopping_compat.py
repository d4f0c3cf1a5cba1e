"""`reglight.callbacks.EarlyStopping` as a drop-in for Lightning's `EarlyStopping`.

The reference is Lightning's own class, run side by side: either in the same Trainer (the model logs the
same value under two keys, one watched by each callback; both then see every check and must take the same
decisions), or in two Trainers fed the same values. Hand-computed epochs are checked as well.
"""

from __future__ import annotations

import inspect
import math
import pickle
from pathlib import Path
from typing import Any
from unittest import mock

import cloudpickle
import pytest
import torch
from compat_models import QUIET, Scripted, fit, loaders, same_as, summary
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from reglight.callbacks import EarlyStopping
from reglight.callbacks.early_stopping import BEST_WEIGHTS_KEY, MisconfigurationError

Reason = EarlyStoppingReason


def side_by_side(
    values: list[float],
    where: str = "validation",
    trainer_kwargs: dict | None = None,
    ours_kwargs: dict | None = None,
    **kwargs: Any,
) -> tuple[EarlyStopping, LightningEarlyStopping, Trainer]:
    """Ours on `val/x` and Lightning's on `ref/x` (the same values), with the same arguments, one Trainer."""
    ours = EarlyStopping("val/x", **kwargs, **(ours_kwargs or {}))
    ref = LightningEarlyStopping("ref/x", **kwargs)
    trainer = fit(Scripted(values, where=where), [ours, ref], **(trainer_kwargs or {}))
    return ours, ref, trainer


# ---------------------------------------------------------------- construction, state key, pickling
def test_bad_mode_raises_lightnings_error_and_a_value_error() -> None:
    """Regression: a bad `mode` raised a plain ValueError, which Lightning's callers do not catch."""
    with pytest.raises(MisconfigurationException) as ref_error:
        LightningEarlyStopping("val/x", mode="maximum")
    with pytest.raises(MisconfigurationException) as ours_error:
        EarlyStopping("val/x", mode="maximum")
    assert str(ours_error.value) == str(ref_error.value)
    assert isinstance(ours_error.value, ValueError)
    assert issubclass(MisconfigurationError, MisconfigurationException)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(criterion="gl"),
        dict(criterion="median"),
        dict(criterion="up", mode="max"),
        dict(min_delta=-1.0),
        dict(patience=-2),
        dict(criterion="up", strips=0),
    ],
)
def test_our_argument_errors_are_both_kinds(kwargs: dict) -> None:
    with pytest.raises(MisconfigurationException) as error:
        EarlyStopping("val/x", **kwargs)
    assert isinstance(error.value, ValueError)
    assert list(kwargs)[-1] in str(error.value)  # the message names the argument


@pytest.mark.parametrize(("monitor", "mode"), [("val/loss", "min"), ("val/acc", "max")])
def test_state_key_is_lightnings(monitor: str, mode: str) -> None:
    assert (
        EarlyStopping(monitor, mode=mode).state_key
        == LightningEarlyStopping(monitor, mode=mode).state_key
    )
    # a Prechelt rule on the same metric gets its own key, so both can be checkpointed together
    prechelt = EarlyStopping(monitor, criterion="up") if mode == "min" else None
    if prechelt is not None:
        assert prechelt.state_key != EarlyStopping(monitor).state_key


def test_defaults() -> None:
    stop = EarlyStopping("val/x")
    ref = LightningEarlyStopping("val/x")
    for name in (
        "min_delta",
        "patience",
        "verbose",
        "mode",
        "strict",
        "check_finite",
        "stopping_threshold",
    ):
        assert getattr(stop, name) == getattr(ref, name), name
    assert stop.restore_best_weights is False
    assert (stop.train_monitor, stop.gap_name) == ("train/loss", "val/gap")
    assert isinstance(stop, LightningEarlyStopping)


@pytest.mark.parametrize("dumps_loads", [pickle, cloudpickle], ids=["pickle", "cloudpickle"])
def test_pickles(dumps_loads: Any) -> None:
    stop = EarlyStopping(
        "val/x", criterion="gl", criterion_threshold=2.0, restore_best_weights=True
    )
    copy = dumps_loads.loads(dumps_loads.dumps(stop))
    assert vars(copy) == vars(stop)


# ---------------------------------------------------------------- the stopping rules, side by side
@pytest.mark.parametrize(
    ("values", "kwargs", "stop_epoch"),
    [
        ([5, 4, 4, 4, 4, 4, 4], dict(patience=2), 3),
        ([3, 2, 2.5, 1, 1.5, 1.2, 1.1, 1.0], dict(patience=2), 5),
        ([1, 2, 3, 4], dict(patience=0), 1),
        ([0.1, 0.3, 0.2, 0.25, 0.2, 0.1], dict(patience=2, mode="max"), 3),
    ],
)
def test_patience(values: list[float], kwargs: dict, stop_epoch: int) -> None:
    ours, ref, trainer = side_by_side(values, **kwargs)
    same_as(summary(ours), summary(ref))
    assert ours.stopped_epoch == stop_epoch and trainer.current_epoch == stop_epoch + 1
    assert ours.stopping_reason is Reason.PATIENCE_EXHAUSTED and ours.stopped_by == "patience"


@pytest.mark.parametrize(
    ("values", "kwargs", "stop_epoch"),
    [
        # 0.85 improves on 1 by more than 0.1; 0.8 does not improve on 0.85 by 0.1; 0.7 does
        ([1.0, 0.85, 0.8, 0.7, 0.69, 0.68, 0.67], dict(min_delta=0.1, patience=2), 5),
        ([0.5, 0.55, 0.7, 0.72, 0.74, 0.76], dict(min_delta=0.05, patience=2, mode="max"), 4),
    ],
)
def test_min_delta(values: list[float], kwargs: dict, stop_epoch: int) -> None:
    ours, ref, _ = side_by_side(values, **kwargs)
    same_as(summary(ours), summary(ref))
    assert ours.stopped_epoch == stop_epoch


@pytest.mark.parametrize(
    ("values", "kwargs", "stop_epoch", "reason"),
    [
        ([5, 3, 1, 0.4, 0.2], dict(stopping_threshold=0.5), 3, Reason.STOPPING_THRESHOLD),
        (
            [0.5, 0.8, 0.95, 0.97],
            dict(stopping_threshold=0.9, mode="max"),
            2,
            Reason.STOPPING_THRESHOLD,
        ),
        (
            [1, 2, 30, 4, 5],
            dict(divergence_threshold=10.0, patience=9),
            2,
            Reason.DIVERGENCE_THRESHOLD,
        ),
        (
            [0.9, 0.5, 0.05, 0.9],
            dict(divergence_threshold=0.1, mode="max", patience=9),
            2,
            Reason.DIVERGENCE_THRESHOLD,
        ),
    ],
)
def test_thresholds(values: list[float], kwargs: dict, stop_epoch: int, reason: Reason) -> None:
    ours, ref, _ = side_by_side(values, **kwargs)
    same_as(summary(ours), summary(ref))
    assert ours.stopped_epoch == stop_epoch and ours.stopping_reason is reason
    assert ours.stopped_by == reason.name.lower()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("check_finite", [True, False])
def test_non_finite_values(bad: float, check_finite: bool) -> None:
    ours, ref, trainer = side_by_side([3, 2, bad, 1, 0.5], check_finite=check_finite, patience=9)
    same_as(summary(ours), summary(ref))
    if check_finite:
        assert ours.stopped_epoch == 2 and ours.stopping_reason is Reason.NON_FINITE_METRIC
    else:
        assert ours.stopped_epoch == 0 and trainer.current_epoch == 10


def test_not_stopped() -> None:
    ours, ref, _ = side_by_side([5, 4, 3], patience=3, trainer_kwargs=dict(max_epochs=3))
    same_as(summary(ours), summary(ref))
    assert (ours.stopped_epoch, ours.stopping_reason, ours.stopped_by) == (
        0,
        Reason.NOT_STOPPED,
        None,
    )
    assert ours.stopping_reason_message is None


def test_a_prechelt_rule_reports_its_reason() -> None:
    ours = EarlyStopping("val/x", criterion="gl", criterion_threshold=5.0)
    fit(Scripted([1.0, 0.7, 0.72, 0.75, 0.7]), [ours])
    # GL(2) = 100 (0.72/0.7 - 1) = 2.9 <= 5, GL(3) = 100 (0.75/0.7 - 1) = 7.1 > 5
    assert ours.stopped_epoch == 3 and ours.stopped_by == "gl"
    assert (
        ours.stopping_reason is Reason.PATIENCE_EXHAUSTED
    )  # Lightning's enum has no member for it
    assert ours.stopping_reason_message.startswith(
        "Prechelt criterion 'gl': GL = 7.143 > criterion_threshold = 5.0"
    )


# ---------------------------------------------------------------- when the check runs
@pytest.mark.parametrize(
    ("where", "check_on_train_epoch_end"),
    # (a metric logged at the end of the training epoch does not exist yet when validation ends)
    [
        ("validation", None),
        ("validation", True),
        ("validation", False),
        ("train", None),
        ("train", True),
    ],
)
def test_check_on_train_epoch_end(check_on_train_epoch_end: bool | None, where: str) -> None:
    values = [4, 3, 3.5, 3.2, 3.1, 2]
    ours, ref, trainer = side_by_side(
        values, where=where, patience=2, check_on_train_epoch_end=check_on_train_epoch_end
    )
    same_as(summary(ours), summary(ref))
    assert trainer.current_epoch == ours.stopped_epoch + 1


@pytest.mark.parametrize(
    "trainer_kwargs",
    [dict(check_val_every_n_epoch=2), dict(val_check_interval=0.5)],
    ids=["every_2", "interval"],
)
def test_check_follows_validation(trainer_kwargs: dict) -> None:
    """With validation not once per epoch the check runs after each validation, as in Lightning."""
    values = [5, 4, 4.5, 4.2, 4.1, 4.3, 4.4, 4.6, 4.7, 4.8]
    ours, ref, _ = side_by_side(values, patience=2, trainer_kwargs=trainer_kwargs)
    same_as(summary(ours), summary(ref))
    assert ours.stopping_reason is Reason.PATIENCE_EXHAUSTED


def test_no_check_in_sanity_check_or_outside_fit() -> None:
    ours = EarlyStopping("val/x", patience=1)
    ref = LightningEarlyStopping("ref/x", patience=1)
    model = Scripted([3, 2, 1])
    trainer = fit(model, [ours, ref], max_epochs=2, num_sanity_val_steps=1)
    same_as(summary(ours), summary(ref))
    assert (
        ours.best_epoch == 1 and float(ours.best_score) == 2.0
    )  # the sanity check logged 3: not checked
    trainer.validate(model, loaders()[1], verbose=False)  # validating is not fitting: no check
    same_as(summary(ours), summary(ref))
    assert ours.best_epoch == 1 and float(ours.best_score) == 2.0


@pytest.mark.parametrize(
    ("batches", "min_epochs", "min_steps"), [(3, 0, 7), (3, 2, 0), (3, 3, 7), (2, 1, 5)]
)
def test_min_epochs_and_min_steps(batches: int, min_epochs: int, min_steps: int) -> None:
    """A callback that asks to stop at every check waits for `min_epochs` / `min_steps`, as Lightning's."""
    runs = []
    for cls in (EarlyStopping, LightningEarlyStopping):
        stop = cls("train/x", stopping_threshold=100.0, check_on_train_epoch_end=True)
        trainer = Trainer(
            callbacks=[stop],
            **{**QUIET, "max_epochs": 10},
            limit_train_batches=batches,
            limit_val_batches=0,
            min_epochs=min_epochs,
            min_steps=min_steps,
        )
        trainer.fit(
            Scripted([1.0], keys=("train/x",), where="train"), loaders(n=10, batch_size=2)[0]
        )
        runs.append((trainer.current_epoch, trainer.global_step, stop.stopped_epoch))
    # it stops at the first check once both minimums are met, inside an epoch for `min_steps`
    steps = max(min_steps, min_epochs * batches, batches)
    epochs = math.ceil(steps / batches)
    assert runs[0] == runs[1] == (epochs, steps, epochs - 1)


# ---------------------------------------------------------------- several callbacks
@pytest.mark.parametrize("where", ["validation", "train"])
@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_multiple_callbacks(where: str, order: tuple[int, int]) -> None:
    values = {"a": [8, 4, 2, 3, 4, 5, 8, 10], "b": [0, 0, 0, 0, 0, 0, 0, 0]}
    results = []
    for cls in (EarlyStopping, LightningEarlyStopping):
        pair = [cls("a", patience=1), cls("b", patience=4)]
        callbacks = [pair[i] for i in order]
        trainer = fit(Scripted(values, keys=("a", "b"), where=where), callbacks)
        results.append((trainer.current_epoch, [summary(cb) for cb in pair]))
    (ours_epoch, ours), (ref_epoch, ref) = results
    assert ours_epoch == ref_epoch == 4  # "a" runs out of patience after epoch 3
    for a, b in zip(ours, ref):
        same_as(a, b)


def test_two_of_ours_on_one_metric_with_different_rules(tmp_path: Path) -> None:
    patience = EarlyStopping("val/x", patience=2, restore_best_weights=True)
    gl = EarlyStopping("val/x", criterion="gl", criterion_threshold=1.0, restore_best_weights=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    model = Scripted([3.0, 2.0, 2.1, 2.2], keys=("val/x",))
    fit(model, [patience, gl, ckpt], enable_checkpointing=True)
    # GL(2) = 5 > 1 stops after epoch 2 (patience would wait until after epoch 3)
    assert (gl.stopped_epoch, gl.stopped_by, patience.stopped_epoch) == (2, "gl", 0)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert {patience.state_key, gl.state_key} <= saved["callbacks"].keys()
    assert saved[BEST_WEIGHTS_KEY].keys() == {patience.state_key, gl.state_key}


# ---------------------------------------------------------------- messages
@pytest.mark.parametrize("verbose", [True, False])
def test_messages(es_messages: list[str], verbose: bool) -> None:
    ours, _ref, _ = side_by_side(
        [5, 4, 4.5, 3, 3.5, 3.2, 3.1], patience=2, min_delta=0.5, verbose=verbose
    )
    mine = [m for m in es_messages if "val/x" in m]
    theirs = [m.replace("ref/x", "val/x") for m in es_messages if "ref/x" in m]
    assert mine == theirs
    # 3 improvements (epochs 0, 1, 3) and the stop after epoch 5, nothing else
    assert len(mine) == (4 if verbose else 0)
    if verbose:
        assert mine[-1] == ours.stopping_reason_message


def test_one_check_per_epoch(es_messages: list[str]) -> None:
    """Every check of a steadily improving metric logs one message: none is run twice or skipped."""
    side_by_side([6, 5, 4, 3, 2], verbose=True, trainer_kwargs=dict(max_epochs=5))
    assert sum("val/x" in m for m in es_messages) == sum("ref/x" in m for m in es_messages) == 5


def test_missing_metric() -> None:
    model = Scripted([1.0], keys=("val/x",))
    with pytest.raises(RuntimeError) as ref_error:
        fit(model, [LightningEarlyStopping("val/y")])
    with pytest.raises(RuntimeError) as ours_error:
        fit(Scripted([1.0], keys=("val/x",)), [EarlyStopping("val/y")])
    assert str(ours_error.value) == str(ref_error.value)
    ours = EarlyStopping("val/y", strict=False)
    ref = LightningEarlyStopping("ref/y", strict=False)
    fit(Scripted([1.0]), [ours, ref], max_epochs=2)  # not strict: no check, no error
    assert ours.stopped_epoch == ref.stopped_epoch == 0 and ours.best_epoch is None


# ---------------------------------------------------------------- state and resume
def _small(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() <= 1
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (int, float)) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def test_state_dict_is_lightnings_plus_numbers() -> None:
    """Regression: the state held the whole weights copy (its equality check raised, checkpoints grew)."""
    ours, ref, _ = side_by_side(
        [3, 2, 2.5, 2.6], patience=2, ours_kwargs=dict(restore_best_weights=True)
    )
    state, ref_state = ours.state_dict(), ref.state_dict()
    assert ref_state.keys() <= state.keys()
    ref_state["stopping_reason_message"] = ref_state["stopping_reason_message"].replace(
        "ref/x", "val/x"
    )
    assert {k: state[k] for k in ref_state} == ref_state
    assert all(_small(v) for v in state.values()), state
    assert state == ours.state_dict()  # comparable, as Lightning's


def test_states_load_across_classes() -> None:
    ours, ref, _ = side_by_side([3, 2, 2.5, 2.6, 2.7], patience=2)
    fresh = EarlyStopping("val/x", patience=2)
    fresh.load_state_dict(ref.state_dict())  # a checkpoint written with Lightning's class
    back = LightningEarlyStopping("ref/x", patience=2)
    back.load_state_dict(ours.state_dict())  # and the other way
    for a, b in ((fresh, ref), (ours, back)):
        assert (a.wait_count, a.stopped_epoch, float(a.best_score)) == (
            b.wait_count,
            b.stopped_epoch,
            float(b.best_score),
        )
        assert (a.stopping_reason, a.stopping_reason_message) == (
            b.stopping_reason,
            b.stopping_reason_message,
        )


def _resume_run(tmp_path: Path, values: list[float], restore: bool) -> dict[str, Any]:
    def callbacks() -> list:
        return [
            EarlyStopping("val/x", patience=2, restore_best_weights=restore),
            EarlyStopping("val/y", patience=9, restore_best_weights=restore),
            LightningEarlyStopping("ref/x", patience=2),
        ]

    keys = ("val/x", "val/y", "ref/x")
    scripted = {"val/x": values, "ref/x": values, "val/y": [v * v for v in values]}
    torch.manual_seed(0)
    full = Scripted(scripted, keys=keys)
    full_cbs = callbacks()
    fit(full, full_cbs)

    torch.manual_seed(0)
    first = Scripted(scripted, keys=keys)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    first_cbs = callbacks()
    fit(first, [*first_cbs, ckpt], max_epochs=3, enable_checkpointing=True)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)  # numbers and tensors only

    resumed = Scripted(scripted, keys=keys)
    resumed_cbs = callbacks()
    trainer = Trainer(callbacks=resumed_cbs, **{**QUIET, "max_epochs": 10})
    trainer.fit(resumed, *loaders(), ckpt_path=str(tmp_path / "last.ckpt"))
    return dict(
        full=full,
        full_cbs=full_cbs,
        first_cbs=first_cbs,
        saved=saved,
        resumed=resumed,
        resumed_cbs=resumed_cbs,
    )


def test_resume_restores_the_same_weights(tmp_path: Path) -> None:
    """Regression: with the copy out of `state_dict`, it travels in the checkpoint under its own key."""
    values = [
        3.0,
        2.0,
        1.0,
        1.5,
        1.2,
        1.1,
        1.3,
    ]  # best at epoch 2 for both; patience 2 stops after 4
    run = _resume_run(tmp_path, values, restore=True)
    ours, other, ref = run["resumed_cbs"]
    same_as(summary(ours), summary(ref))
    assert ours.stopped_epoch == run["full_cbs"][0].stopped_epoch == 4
    assert ours.restored and ours.best_epoch == run["full_cbs"][0].best_epoch == 2
    for key, value in run["full"].state_dict().items():
        assert torch.equal(run["resumed"].state_dict()[key], value), key
    # each instance has its own copy, under its own state key
    saved = run["saved"]
    assert saved[BEST_WEIGHTS_KEY].keys() == {ours.state_key, other.state_key}
    for cb in run["first_cbs"][:2]:
        assert saved["callbacks"][cb.state_key] == cb.state_dict()


def test_no_weights_in_checkpoint_without_restoring(tmp_path: Path) -> None:
    run = _resume_run(tmp_path, [3.0, 2.0, 1.0, 1.5, 1.2, 1.1], restore=False)
    assert BEST_WEIGHTS_KEY not in run["saved"]
    same_as(summary(run["resumed_cbs"][0]), summary(run["resumed_cbs"][2]))
    assert not run["resumed_cbs"][0].restored


# ---------------------------------------------------------------- the one non-public name we rely on
def test_lightning_still_calls_evaluate_stopping_criteria() -> None:
    """Fails loudly if Lightning stops routing each check through `_evaluate_stopping_criteria`.

    Our Prechelt rules hook in there; were it renamed or bypassed, they would silently never stop training.
    """
    assert (
        "current"
        in inspect.signature(LightningEarlyStopping._evaluate_stopping_criteria).parameters
    )
    stop = EarlyStopping("val/x", patience=5)
    calls: list[torch.Tensor] = []
    original = stop._evaluate_stopping_criteria

    def spy(current: torch.Tensor) -> tuple[bool, str | None]:
        calls.append(current)
        return original(current)

    with mock.patch.object(stop, "_evaluate_stopping_criteria", side_effect=spy):
        fit(Scripted([3.0, 2.0, 1.0], keys=("val/x",)), [stop], max_epochs=3)
    assert [float(c) for c in calls] == [3.0, 2.0, 1.0] and all(c.ndim == 0 for c in calls)
