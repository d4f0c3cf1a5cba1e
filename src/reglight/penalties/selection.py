"""Which parameters of a model a penalty applies to."""

from __future__ import annotations

import fnmatch
import importlib
import sys
from collections.abc import Sequence

from torch import nn

__all__ = [
    "DEFAULT_PENALIZED_TYPES",
    "Pattern",
    "normalize_patterns",
    "select_named_parameters",
    "select_parameters",
]

#: One selection rule: a glob on parameter names (``"encoder.*.weight"``) or a module type.
Pattern = str | type[nn.Module]

#: Module types whose weights are penalized by default: linear maps, convolutions (including
#: transposed and lazy ones) and attention projections. Biases, normalization parameters and
#: embeddings are left alone, the usual practice.
DEFAULT_PENALIZED_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.MultiheadAttention,
)


def _resolve_type(pattern: str) -> Pattern:
    """``"torch.nn.Linear"`` -> ``nn.Linear`` (how a type arrives from a YAML config); else unchanged.

    Only strings without glob characters whose top-level package is already imported are tried.
    """
    module_path, _, attr = pattern.rpartition(".")
    if any(c in pattern for c in "*?[") or not module_path:
        return pattern
    if module_path.split(".")[0] not in sys.modules:
        return pattern
    try:
        obj = getattr(importlib.import_module(module_path), attr)
    except (ImportError, AttributeError, ValueError):
        return pattern
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else pattern


def normalize_patterns(
    name: str, patterns: Pattern | Sequence[Pattern] | None
) -> tuple[Pattern, ...]:
    """Validate ``include``/``exclude`` and return them as a tuple.

    A string that is the import path of an ``nn.Module`` subclass (``"torch.nn.Linear"``, as written in
    a YAML config) stands for that type.

    Args:
        name: the argument's name, for error messages.
        patterns: ``None``, one pattern, or a sequence of patterns (globs or ``nn.Module`` types).

    Returns:
        A tuple of patterns (empty for ``None``).

    Raises:
        TypeError: if a pattern is neither a string nor a subclass of ``nn.Module``.
    """
    if patterns is None:
        return ()
    items = [patterns] if isinstance(patterns, (str, type)) else list(patterns)
    for p in items:
        if not (isinstance(p, str) or (isinstance(p, type) and issubclass(p, nn.Module))):
            raise TypeError(
                f"`{name}` entries must be name globs (str) or nn.Module subclasses, got {p!r}"
            )
    return tuple(_resolve_type(p) if isinstance(p, str) else p for p in items)


def _owner_types(model: nn.Module) -> dict[str, type[nn.Module]]:
    """Parameter name -> type of the module that owns it directly."""
    owners: dict[str, type[nn.Module]] = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = type(module)
    return owners


def _matches(
    name: str, owner: type[nn.Module] | None, pattern: Pattern, *, weights_only: bool
) -> bool:
    if isinstance(pattern, str):
        return fnmatch.fnmatchcase(name, pattern)
    if owner is None or not issubclass(owner, pattern):
        return False
    return not (weights_only and "bias" in name.rsplit(".", 1)[-1])


def select_named_parameters(
    model: nn.Module,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """Like [`select_parameters`][reglight.penalties.select_parameters] but returns ``(name, parameter)`` pairs.

    Args:
        model: the model.
        include: what to penalize (see [`select_parameters`][reglight.penalties.select_parameters]).
        exclude: what not to penalize (see [`select_parameters`][reglight.penalties.select_parameters]).

    Returns:
        ``(name, parameter)`` pairs in ``model.named_parameters()`` order.

    Raises:
        ValueError: if an ``include`` entry matches no parameter.
        TypeError: if an entry is neither a glob nor an ``nn.Module`` subclass.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
        >>> [name for name, _ in select_named_parameters(model)]
        ['0.weight', '2.weight']
    """
    inc = normalize_patterns("include", include)
    exc = normalize_patterns("exclude", exclude)
    owners = _owner_types(model)
    named = list(model.named_parameters())
    if inc:
        selected = set()
        for pattern in inc:
            hits = {n for n, _ in named if _matches(n, owners.get(n), pattern, weights_only=True)}
            if not hits:
                shown = ", ".join(n for n, _ in named[:20]) + (", ..." if len(named) > 20 else "")
                what = pattern if isinstance(pattern, str) else pattern.__name__
                raise ValueError(
                    f"`include` entry {what!r} matches no parameter of {type(model).__name__}; "
                    f"its parameters are: {shown or '(none)'}"
                )
            selected |= hits
    else:
        selected = {
            n
            for n, _ in named
            if any(
                _matches(n, owners.get(n), t, weights_only=True) for t in DEFAULT_PENALIZED_TYPES
            )
        }
    return [
        (n, p)
        for n, p in named
        if n in selected and not any(_matches(n, owners.get(n), e, weights_only=False) for e in exc)
    ]


def select_parameters(
    model: nn.Module,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
) -> list[nn.Parameter]:
    """The parameters of ``model`` a penalty applies to.

    By default: the weights of ``Linear``/``Bilinear``, convolution and ``MultiheadAttention``
    modules (`DEFAULT_PENALIZED_TYPES`); biases, normalization parameters and embeddings are
    not penalized. ``include`` replaces that default: each entry is a glob on parameter names
    (``fnmatch``, e.g. ``"encoder.*.weight"``; ``*`` also matches dots) or an ``nn.Module`` subclass
    (the non-bias parameters owned directly by modules of that type; in a YAML config write its
    import path, e.g. ``torch.nn.Linear``). An ``include`` entry that
    matches nothing is an error, not a silent no-op. ``exclude`` entries (globs or types, where a
    type removes all parameters its modules own) are removed afterwards.

    Args:
        model: the model.
        include: what to penalize: a glob, a module type, or a sequence of them; ``None`` for the
            default.
        exclude: what not to penalize: a glob, a module type, or a sequence of them.

    Returns:
        The selected parameters in ``model.named_parameters()`` order (shared parameters once).

    Raises:
        ValueError: if an ``include`` entry matches no parameter.
        TypeError: if an entry is neither a glob nor an ``nn.Module`` subclass.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> [p.shape for p in select_parameters(model, exclude="2.*")]
        [torch.Size([4, 3])]
    """
    return [p for _, p in select_named_parameters(model, include, exclude)]
