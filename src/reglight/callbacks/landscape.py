r"""A Lightning callback that measures the curvature of the training loss during training.

[`LossLandscapeProbe`][reglight.callbacks.LossLandscapeProbe] computes, every few epochs and on a fixed set of
batches, the largest Hessian eigenvalue, the Hessian trace and the $\epsilon$-sharpness of the loss with the
functions of [`reglight.landscape`][reglight.landscape], logs them under `landscape/...` and keeps their
history in checkpoints. It never changes training: the weights at the end of a run are the same, bit for
bit, with or without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor
from typing_extensions import override

from reglight._validation import check_choice, check_positive, check_positive_int
from reglight.penalties.selection import Pattern, normalize_patterns

__all__ = ["FIGURES", "METRICS", "SOURCES", "LossLandscapeProbe", "ProbeLossFn"]

METRICS = ("top_eigenvalue", "trace", "sharpness")
r"""What the probe can measure: $\lambda_{\max}(H)$, $\operatorname{tr} H$ and the $\epsilon$-sharpness."""

FIGURES = ("slice_1d", "slice_2d")
"""Figures the probe can draw: the loss along one or two random filter-normalized directions."""

SOURCES = ("train", "val")
"""Where the probe batches come from: the training or the (first) validation dataloader."""

ProbeLossFn = Callable[[pl.LightningModule, Any], Tensor]
"""`loss_fn(pl_module, batch) -> scalar Tensor`: the loss whose landscape is probed."""


def training_step_loss(pl_module: pl.LightningModule, batch: Any) -> Tensor:
    """The loss `pl_module.training_step(batch, 0)` returns (a tensor, or the `"loss"` entry of a dict).

    The default `loss_fn` of [`LossLandscapeProbe`][reglight.callbacks.LossLandscapeProbe], which calls it
    with the module's `log` and `log_dict` silenced.

    Args:
        pl_module: The LightningModule.
        batch: One batch, as `training_step` receives it.

    Returns:
        The loss, a scalar tensor.

    Raises:
        TypeError: If `training_step` returns neither a tensor nor a mapping with a `"loss"` tensor.
    """
    out = pl_module.training_step(batch, 0)
    if isinstance(out, Mapping):
        out = out.get("loss")
    if not isinstance(out, Tensor):
        raise TypeError(
            "LossLandscapeProbe's default `loss_fn` needs `training_step` to return the loss (a tensor or a "
            f"dict with a 'loss' tensor), got {type(out).__name__}; pass `loss_fn=` instead"
        )
    return out


def _no_log(*args: Any, **kwargs: Any) -> None:
    """Stands in for `LightningModule.log`/`log_dict` while the probe calls `training_step`."""


@contextmanager
def _silenced(pl_module: pl.LightningModule) -> Iterator[None]:
    """`pl_module.log` and `pl_module.log_dict` do nothing inside the block (instance attributes shadow them)."""
    names: tuple[str, ...] = ("log", "log_dict")
    saved: dict[str, Any] = {
        name: pl_module.__dict__[name] for name in names if name in pl_module.__dict__
    }
    try:
        pl_module.__dict__["log"] = _no_log
        pl_module.__dict__["log_dict"] = _no_log
        yield
    finally:
        for name in names:
            pl_module.__dict__.pop(name, None)
        pl_module.__dict__.update(saved)


def _forked_rng(device: torch.device) -> Any:
    """Save the global RNG of the CPU (and of `device`) and restore it when the block ends."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index])
    if device.type in ("cpu", "meta"):
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(device_type=device.type)


def _dist_world() -> tuple[int, int]:
    """`(world size, rank)` of the default process group, `(1, 0)` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of `tensor` over all processes (a new tensor; `tensor` is left alone)."""
    out = tensor.clone()
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    return out


def _detached_copy(batch: Any) -> Any:
    return apply_to_collection(batch, Tensor, lambda t: t.detach().clone())


class LossLandscapeProbe(Callback):
    r"""Measure the sharpness of the training loss every few epochs, without changing training.

    On a fixed set of batches $B_1,\dots,B_n$ the probe takes the mean loss
    $L(\theta) = \frac1n\sum_{b} \ell(\theta; B_b)$ and its Hessian $H = \nabla^2 L(\theta)$ over all trained
    parameters, and logs (with the default `name="landscape"`):

    - `landscape/top_eigenvalue`: $\lambda_{\max}(H)$ by the Lanczos iteration on Hessian-vector products
      (Pearlmutter 1994; Lanczos 1950; Yao et al. 2020, *PyHessian*), see
      [`top_eigenvalues`][reglight.landscape.top_eigenvalues];
    - `landscape/trace` and `landscape/trace_std_error`: Hutchinson's estimate
      $\operatorname{tr} H \approx \frac1m\sum_{i} v_i^\top H v_i$ with Rademacher $v_i$ (Hutchinson 1990;
      Avron & Toledo 2011), see [`hessian_trace`][reglight.landscape.hessian_trace];
    - `landscape/sharpness`: Keskar et al.'s (2017) $\epsilon$-sharpness
      $100\,(\max_{\delta\in\mathcal C_\epsilon} L(\theta+\delta) - L(\theta))/(1 + L(\theta))$ over the box
      $|\delta_i| \le \epsilon(|\theta_i| + 1)$ (or ASAM's scale-invariant ball, `adaptive=True`), found by
      projected gradient ascent, see [`sharpness`][reglight.landscape.sharpness];
    - `landscape/seconds`: the probe's own wall time, and `landscape/overhead`: the time of all probes so far
      over the training time so far (see the time budget below);
    - optionally figures (`figures`): the loss along one or two random filter-normalized directions
      (Li et al. 2018), through [`log_figure`][reglight.logging.log_figure] (W&B image, TensorBoard figure,
      PNG file next to a CSV log).

    By default only the top eigenvalue is measured, on one batch: on the medical-image recipe a trace from
    10 Hutchinson vectors had a standard error larger than the trace itself, and each metric adds to the
    cost (below).

    **When.** At the end of every `every_n_epochs`-th training epoch (epochs `every_n_epochs - 1`,
    `2 * every_n_epochs - 1`, ...), after that epoch's validation, as long as the time budget allows
    (`max_overhead`, below). Every process probes at the same epochs.

    **The batches.** The first `batches` batches that the Trainer itself feeds to the model during the
    first training epoch (`source="train"`) or the first validation epoch after the sanity check
    (`source="val"`): the probe never draws from a dataloader itself, so samplers, shuffling and augmentation
    random numbers are untouched. Each batch is copied (detached, on the module's device, after
    `on_after_batch_transfer`) as `training_step` received it: training batches are augmented ones. The set
    is then fixed for the whole run and saved in checkpoints (`save_batches=True`), so a resumed run probes
    the same batches. Under DDP the set is the union over processes: global batch $j = iW + r$ is the
    $i$-th local batch of rank $r$ among $W$ processes, each process evaluates its share
    ($j \equiv r \bmod W$) and the sums are all-reduced, so every rank logs the same numbers, those of one
    process on all the batches.

    **The loss.** `loss_fn(pl_module, batch)` when given. By default the probe calls
    `pl_module.training_step(batch, 0)` and takes the loss it returns (a tensor, or a dict's `"loss"`),
    with `pl_module.log` and `pl_module.log_dict` silenced during the probe (Lightning would otherwise record
    the probe's values under the training keys of the current epoch). Anything else `training_step` does
    (updating a torchmetrics metric, drawing mixup coefficients) also happens on the probe batches, so a
    module whose `training_step` has side effects should get a `loss_fn`. Modules with manual optimization
    need one (their `training_step` steps optimizers). By default the model is in evaluation mode
    (`train_mode=False`: dropout off, batch-norm running statistics), as in PyHessian.

    **Never changes training.** The probe runs in float32 (autocast disabled), under `torch.enable_grad()`,
    with its own `torch.Generator` seeded with `seed` (the same random vectors at every probe); the global
    random number generators are saved before and restored after it (also what `training_step` drew).
    Parameters, buffers, gradients, `requires_grad` flags and train/eval modes are left exactly as found
    ([`preserved`][reglight.landscape.preserved]); optimizer state and dataloaders are not touched.

    **Cost and the time budget.** A Hessian-vector product on a batch costs about two training steps
    (forward, backward and the derivative of the backward), so a probe costs about
    `2 * batches * (max_iter + 1)` training steps for the top eigenvalue (plus `2 * batches * trace_samples`
    for the trace), more than a training epoch of a small data set. With `max_overhead=0.05` (default) a
    due probe runs only if the total time of the probes, this one's included, stays within 5 % of the
    training time so far (validation included); this probe's time is estimated by the last probe's, or
    before the first one from the pace of the training batches. Long epochs are probed every `every_n_epochs` epochs; short ones wait until enough training
    time has passed, so which epochs are probed depends on the machine's speed (rank 0's clock decides
    under DDP). `landscape/overhead` logs the fraction spent so far. Pass `max_overhead=None` to probe at
    every due epoch whatever it costs (reproducible epochs, e.g. for a study of the landscape).

    Args:
        every_n_epochs: Probe at the end of every `every_n_epochs`-th training epoch.
        batches: Number of probe batches over all processes (raised to the number of processes if smaller:
            every process evaluates at least one).
        metrics: What to measure, a subset of `METRICS`.
        max_overhead: Time budget: skip a due probe unless the probes' total time, this one's included
            (estimated), stays within this fraction of the training time so far; `None` probes at every
            due epoch.
        source: `"train"` or `"val"`: where the probe batches come from.
        loss_fn: `loss_fn(pl_module, batch) -> scalar`; `None` for the loss `training_step` returns.
        train_mode: Batch-norm layers use the batch statistics (without updating their running ones);
            dropout stays off either way.
        include: Which parameters span the landscape (default: every parameter with `requires_grad`), in
            the selector vocabulary of [`select_parameters`][reglight.penalties.select_parameters].
        exclude: Which parameters to leave out.
        max_iter: Most Lanczos steps (Hessian-vector products) for the top eigenvalue.
        tol: Relative change of the top eigenvalue estimate between two steps at which Lanczos stops.
        trace_samples: Hutchinson samples for the trace (at least 2, for the standard error).
        epsilon: Size $\epsilon$ of the sharpness neighbourhood.
        adaptive: Adaptive sharpness (ASAM's ball scaled by $|\theta|$, Kwon et al. 2021) instead of the box.
        sharpness_steps: Gradient-ascent steps of the sharpness search (each a gradient over the batches).
        figures: Slice figures to log at each probe, a subset of `FIGURES`.
        slice_points: Points per axis of a slice.
        slice_distance: Half-width of a slice, in units of the (filter-normalized) direction.
        seed: Seed of the probe's own random generator.
        save_batches: Keep the probe batches (on the CPU) in checkpoints, so a resumed run probes the same
            ones; `False` collects new ones after resuming (and keeps checkpoints small).
        name: Prefix of the logged keys; also distinguishes several probes in a checkpoint.

    Attributes:
        history: One dict per probe: `epoch`, `step`, the measured values and `seconds`; saved in
            checkpoints and continued by a resumed run.

    Raises:
        ValueError: For a non-positive `every_n_epochs`, `batches`, `max_overhead`, `max_iter`, `tol`,
            `epsilon`, `sharpness_steps` or `slice_distance`, an
            unknown metric, figure or `source`, nothing to measure, fewer than 2 `trace_samples` or 3
            `slice_points`, an empty `name`; at the start of `fit`, for no `loss_fn` with manual
            optimization.
        TypeError: For a `loss_fn` that is not callable, or a bad `include`/`exclude` entry.

    Examples:
        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> _ = torch.manual_seed(0)
        >>> probe = LossLandscapeProbe(batches=2, metrics=("top_eigenvalue", "trace"), max_overhead=None)
        >>> trainer = Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0, callbacks=[probe],
        ...                   logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False)
        >>> trainer.fit(BoringModel())
        >>> [(h["epoch"], sorted(k for k in h if k not in ("epoch", "step"))) for h in probe.history]
        [(0, ['overhead', 'seconds', 'top_eigenvalue', 'trace', 'trace_std_error']), (1, ['overhead', 'seconds', 'top_eigenvalue', 'trace', 'trace_std_error'])]
        >>> h = probe.history[-1]
        >>> 0 < h["top_eigenvalue"] <= h["trace"] + 4 * h["trace_std_error"]
        True
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        batches: int = 1,
        metrics: Sequence[str] = ("top_eigenvalue",),
        *,
        max_overhead: float | None = 0.05,
        source: str = "train",
        loss_fn: ProbeLossFn | None = None,
        train_mode: bool = False,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        max_iter: int = 10,
        tol: float = 1e-3,
        trace_samples: int = 10,
        epsilon: float = 1e-3,
        adaptive: bool = False,
        sharpness_steps: int = 10,
        figures: Sequence[str] = (),
        slice_points: int = 21,
        slice_distance: float = 1.0,
        seed: int = 0,
        save_batches: bool = True,
        name: str = "landscape",
    ) -> None:
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.batches = check_positive_int("batches", batches)
        self.max_overhead = (
            None if max_overhead is None else check_positive("max_overhead", max_overhead)
        )
        self.metrics = self._check_subset("metrics", metrics, METRICS)
        self.figures = self._check_subset("figures", figures, FIGURES)
        if not self.metrics and not self.figures:
            raise ValueError(
                f"nothing to probe: `metrics` and `figures` are both empty (metrics={metrics!r}, "
                f"figures={figures!r}); choose metrics from {METRICS} or figures from {FIGURES}"
            )
        self.source = check_choice("source", source, SOURCES)
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(
                f"`loss_fn` must be callable (pl_module, batch) -> Tensor or None, got {loss_fn!r}"
            )
        self.loss_fn = loss_fn
        if not isinstance(train_mode, bool):
            raise TypeError(f"`train_mode` must be a bool, got {train_mode!r}")
        self.train_mode = train_mode
        self.include = normalize_patterns("include", include)
        self.exclude = normalize_patterns("exclude", exclude)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_positive("tol", tol)
        self.trace_samples = check_positive_int("trace_samples", trace_samples, minimum=2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.adaptive = bool(adaptive)
        self.sharpness_steps = check_positive_int("sharpness_steps", sharpness_steps)
        self.slice_points = check_positive_int("slice_points", slice_points, minimum=3)
        self.slice_distance = check_positive("slice_distance", slice_distance)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.save_batches = bool(save_batches)
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}")
        self.name = name

        self.history: list[dict[str, float]] = []
        self._batches: list[Any] | None = None  # the global probe set, on the CPU, in global order
        self._local: list[Any] = []  # this process's batches while collecting
        self._share: list[Any] | None = None  # this process's share, on the module's device
        self._world = (1, 0)
        # the time budget: seconds spent probing and training (earlier fits included), training batches seen
        self._probe_seconds = 0.0
        self._last_seconds: float | None = None
        self._train_before = 0.0
        self._train_batches = 0
        self._clock: float | None = None
        self._clock_probe = 0.0
        self._skipped: tuple[int, float, float] | None = None  # (epoch, estimate, training seconds)

    @staticmethod
    def _check_subset(
        name: str, values: Sequence[str], allowed: tuple[str, ...]
    ) -> tuple[str, ...]:
        if isinstance(values, str):
            values = (values,)
        if not isinstance(values, Sequence):
            raise TypeError(f"`{name}` must be a sequence of names from {allowed}, got {values!r}")
        for v in values:
            if v not in allowed:
                raise ValueError(
                    f"`{name}` entries must be among {', '.join(map(repr, allowed))}, got {v!r} in {values!r}"
                )
        return tuple(dict.fromkeys(values))

    @property
    @override
    def state_key(self) -> str:
        """Key of this probe's state in a checkpoint (unique per name, source and batch count)."""
        return self._generate_state_key(name=self.name, source=self.source, batches=self.batches)

    # -------------------------------------------------------------------------------- set-up

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check that the loss can be computed."""
        if stage != "fit":
            return
        if self.loss_fn is None and not pl_module.automatic_optimization:
            raise ValueError(
                "LossLandscapeProbe cannot use `training_step` as the loss of a module with manual "
                "optimization (it steps the optimizers); pass `loss_fn=lambda module, batch: ...`"
            )
        self._local = []
        self._share = None

    def _count(self, world: int) -> int:
        """Probe batches over all processes: `batches`, raised to one per process."""
        return max(self.batches, world)

    def _local_needed(self, trainer: pl.Trainer) -> int:
        """How many local batches this process contributes: global indices `r, r + W, ... < batches`."""
        world, rank = int(trainer.world_size), int(trainer.global_rank)
        return len(range(rank, self._count(world), world))

    def _collect(self, trainer: pl.Trainer, batch: Any) -> None:
        if self._batches is None and len(self._local) < self._local_needed(trainer):
            self._local.append(_detached_copy(batch))

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Keep a copy of the first training batches (`source="train"`)."""
        if self.source == "train":
            self._collect(trainer, batch)

    @override
    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep a copy of the first validation batches (`source="val"`; not during the sanity check)."""
        if self.source == "val" and not trainer.sanity_checking and dataloader_idx == 0:
            self._collect(trainer, batch)

    # -------------------------------------------------------------------------------- the probe

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Probe at the end of every `every_n_epochs`-th epoch (the same epochs on every process)."""
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0 or not self._within_budget(
            trainer
        ):
            return
        start = time.perf_counter()
        share = self._probe_batches(trainer, pl_module)
        if share is None:
            return
        values = self.probe(
            pl_module, share, reduce=_all_reduce_sum if self._world[0] > 1 else None
        )
        figures = values.pop("_figures", {})
        seconds = time.perf_counter() - start
        self._probe_seconds += seconds
        self._last_seconds = seconds
        values["seconds"] = seconds
        values["overhead"] = self._probe_seconds / max(self._train_seconds(), 1e-9)
        self.history.append(
            {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), **values}
        )
        for key, value in values.items():
            # identical on every process but the times: the max is exact, and the slowest process's time
            pl_module.log(
                f"{self.name}/{key}",
                float(value),
                on_step=False,
                on_epoch=True,
                sync_dist=self._world[0] > 1,
                reduce_fx="max",
            )
        if trainer.is_global_zero:
            self._log_figures(trainer, figures)

    # -------------------------------------------------------------------------------- the time budget

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the training clock of the time budget."""
        self._clock = time.perf_counter()
        self._clock_probe = self._probe_seconds
        self._skipped = None

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count training batches (for the cost estimate of the first probe)."""
        self._train_batches += 1

    def _train_seconds(self) -> float:
        """Wall time of training (validation included) without the probes, over this and earlier fits."""
        if self._clock is None:
            return self._train_before
        elapsed = time.perf_counter() - self._clock - (self._probe_seconds - self._clock_probe)
        return self._train_before + elapsed

    def _estimate(self) -> float:
        """Seconds the next probe will take: the last one's, or, before any, from the training batches' pace.

        A Hessian-vector product on a batch costs about one and a half times the average training batch
        (whose time includes data loading and validation); a sharpness step half that; a slice point a
        sixth (a forward pass).
        """
        if self._last_seconds is not None:
            return self._last_seconds
        world = max(self._world[0], 1)
        n = len(range(0, self._count(world), world))
        hvps = 0.0
        if "top_eigenvalue" in self.metrics:
            hvps += self.max_iter + 1
        if "trace" in self.metrics:
            hvps += self.trace_samples
        if "sharpness" in self.metrics:
            hvps += 0.5 * (self.sharpness_steps + 2)
        if "slice_1d" in self.figures:
            hvps += self.slice_points / 6
        if "slice_2d" in self.figures:
            hvps += self.slice_points**2 / 6
        per_batch = self._train_seconds() / max(self._train_batches, 1)
        return 1.5 * hvps * n * per_batch

    def _within_budget(self, trainer: pl.Trainer) -> bool:
        """Whether probing now keeps the probes' time within `max_overhead` of the training time.

        Rank 0 decides (clocks differ between processes) and every process follows.
        """
        if self.max_overhead is None:
            return True
        self._world = _dist_world()
        estimate = self._estimate()
        fits = self._probe_seconds + estimate <= self.max_overhead * self._train_seconds()
        if not fits:
            self._skipped = (int(trainer.current_epoch), estimate, self._train_seconds())
        return bool(trainer.strategy.broadcast(fits, src=0))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Warn when the time budget let no probe run at all."""
        if not self.history and self._skipped is not None:
            epoch, estimate, train = self._skipped
            rank_zero_warn(
                f"LossLandscapeProbe: no probe ran. At epoch {epoch} a probe would have taken about "
                f"{estimate:.3g} s, more than max_overhead={self.max_overhead:g} of the {train:.3g} s of "
                "training so far; raise `max_overhead`, probe less (`batches`, `metrics`, `max_iter`), "
                "or pass max_overhead=None to probe every `every_n_epochs` epochs whatever it costs"
            )

    def _probe_batches(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> list[Any] | None:
        """This process's share of the probe set (on the module's device), gathering it the first time."""
        self._world = _dist_world()
        world, rank = self._world
        if self._batches is None:
            local = [apply_to_collection(b, Tensor, lambda t: t.cpu()) for b in self._local]
            if world > 1:
                gathered: list[Any] = [None] * world
                torch.distributed.all_gather_object(gathered, local)
            else:
                gathered = [local]
            ordered = [
                (i * world + r, b) for r, part in enumerate(gathered) for i, b in enumerate(part)
            ]
            if not ordered:
                rank_zero_warn(
                    f"LossLandscapeProbe: no {self.source} batch seen yet at epoch {trainer.current_epoch}; "
                    "probing starts once batches were seen"
                )
                return None
            if len(ordered) < self._count(world):
                rank_zero_warn(
                    f"LossLandscapeProbe: only {len(ordered)} {self.source} batches of the {self._count(world)} "
                    "asked for; probing on those"
                )
            self._batches = [b for _, b in sorted(ordered, key=lambda item: item[0])]
            self._local = []
            self._share = None
        if self._share is None:
            if len(self._batches) < world:
                raise ValueError(
                    f"LossLandscapeProbe: {len(self._batches)} probe batches for {world} processes; every "
                    "process needs at least one (more `batches`, or fewer processes)"
                )
            device = pl_module.device
            self._share = [
                apply_to_collection(b, Tensor, lambda t: t.to(device))
                for b in self._batches[rank::world]
            ]
        return self._share

    def probe(
        self,
        pl_module: pl.LightningModule,
        batches: Sequence[Any],
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> dict[str, Any]:
        """Measure the landscape of `pl_module` on `batches` now (what each probe does).

        Args:
            pl_module: The module.
            batches: This process's batches, on the module's device.
            reduce: Sums a tensor over processes (`None` in one process).

        Returns:
            The values by key (`top_eigenvalue`, `trace`, `trace_std_error`, `sharpness`), and under
            `"_figures"` the figures asked for.
        """
        from reglight import landscape as ls

        # the landscape functions call it with the module they were given: this LightningModule
        loss_fn: Any = self.loss_fn if self.loss_fn is not None else training_step_loss
        device = pl_module.device
        common: dict[str, Any] = {
            "include": self.include or None,
            "exclude": self.exclude or None,
            "train_mode": self.train_mode,
            "reduce": reduce,
        }

        def generator() -> torch.Generator:
            return torch.Generator().manual_seed(self.seed)

        out: dict[str, Any] = {}
        with ExitStack() as stack:
            stack.enter_context(_forked_rng(device))
            stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
            stack.enter_context(torch.enable_grad())
            if self.loss_fn is None:
                stack.enter_context(_silenced(pl_module))
            batch_list = list(batches)
            if "top_eigenvalue" in self.metrics:
                eig = ls.top_eigenvalues(
                    pl_module,
                    loss_fn,
                    batch_list,
                    k=1,
                    max_iter=self.max_iter,
                    tol=self.tol,
                    generator=generator(),
                    **common,
                )
                out["top_eigenvalue"] = float(eig.eigenvalues[0])
            if "trace" in self.metrics:
                tr = ls.hessian_trace(
                    pl_module,
                    loss_fn,
                    batch_list,
                    n_samples=self.trace_samples,
                    tol=0.0,  # exactly `trace_samples` vectors: a predictable cost
                    min_samples=2,
                    generator=generator(),
                    **common,
                )
                out["trace"] = float(tr.trace)
                out["trace_std_error"] = float(tr.std_error)
            if "sharpness" in self.metrics:
                sh = ls.sharpness(
                    pl_module,
                    loss_fn,
                    batch_list,
                    epsilon=self.epsilon,
                    adaptive=self.adaptive,
                    steps=self.sharpness_steps,
                    generator=generator(),
                    **common,
                )
                out["sharpness"] = float(sh.sharpness)
            if self.figures:
                out["_figures"] = self._slices(pl_module, loss_fn, batch_list, generator(), common)
        return out

    def _slices(
        self,
        pl_module: pl.LightningModule,
        loss_fn: Any,
        batches: list[Any],
        generator: torch.Generator,
        common: dict[str, Any],
    ) -> dict[str, Any]:
        """The slice figures: the loss along filter-normalized random directions (Li et al. 2018)."""
        from reglight import landscape as ls

        points = torch.linspace(-self.slice_distance, self.slice_distance, self.slice_points)
        select = {"include": common["include"], "exclude": common["exclude"]}
        figures: dict[str, Any] = {}
        if "slice_1d" in self.figures:
            d = ls.random_directions(pl_module, "filter", generator=generator, **select)
            line = ls.slice_1d(pl_module, loss_fn, batches, direction=d, alphas=points, **common)
            figures["slice_1d"] = ls.plot_slice_1d(line, title=f"epoch {pl_module.current_epoch}")
        if "slice_2d" in self.figures:
            dx = ls.random_directions(pl_module, "filter", generator=generator, **select)
            dy = ls.random_directions(pl_module, "filter", generator=generator, **select)
            plane = ls.slice_2d(pl_module, loss_fn, batches, dx, dy, xs=points, ys=points, **common)
            figures["slice_2d"] = ls.plot_contour(plane, title=f"epoch {pl_module.current_epoch}")
        return figures

    def _log_figures(self, trainer: pl.Trainer, figures: Mapping[str, Any]) -> None:
        from reglight.logging import log_figure

        for key, fig in figures.items():
            log_figure(trainer, f"{self.name}/{key}", fig, step=int(trainer.global_step))

    # -------------------------------------------------------------------------------- checkpointing

    @override
    def state_dict(self) -> dict[str, Any]:
        """The history and, with `save_batches=True`, the probe batches (on the CPU)."""
        state: dict[str, Any] = {
            "history": [dict(h) for h in self.history],
            "budget": {
                "probe_seconds": self._probe_seconds,
                "last_seconds": self._last_seconds,
                "train_seconds": self._train_seconds(),
                "train_batches": self._train_batches,
            },
        }
        if self.save_batches and self._batches is not None:
            state["batches"] = self._batches
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history (and the probe batches) from a checkpoint.

        Args:
            state_dict: What `state_dict` returned.
        """
        self.history = [dict(h) for h in state_dict.get("history", [])]
        budget = state_dict.get("budget", {})
        self._probe_seconds = float(budget.get("probe_seconds", 0.0))
        self._last_seconds = budget.get("last_seconds")
        self._train_before = float(budget.get("train_seconds", 0.0))
        self._train_batches = int(budget.get("train_batches", 0))
        self._clock = None
        batches = state_dict.get("batches")
        self._batches = list(batches) if batches is not None and self.save_batches else None
        self._share = None
        self._local = []

    def __repr__(self) -> str:
        return (
            f"LossLandscapeProbe(every_n_epochs={self.every_n_epochs}, batches={self.batches}, "
            f"metrics={self.metrics!r}, source={self.source!r}, name={self.name!r})"
        )
