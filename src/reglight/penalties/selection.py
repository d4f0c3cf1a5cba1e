"""Which parameters (or modules) of a model a regularizer applies to: one `include`/`exclude` vocabulary.

Every selector of the library ([`select_parameters`][reglight.penalties.select_parameters] for penalties,
[`select_named_modules`][reglight.penalties.selection.select_named_modules] for the scheduler knobs of
`reglight.callbacks`) reads the same two arguments:

- `include`: what to take, replacing the selector's default; every entry must match something.
- `exclude`: what to remove afterwards; an entry that matches nothing removes nothing.

Each is one pattern or a sequence of patterns, and a pattern is one of

- a glob on qualified names (`fnmatch`, `*` also matches dots): `"encoder.*.weight"` on parameter names
  for penalties, `"encoder.*.drop"` on module names for knobs;
- an `nn.Module` subclass, matched along the class hierarchy (`nn.Linear`);
- a class name or import path, the form a YAML config writes (`"DropBlock2d"`, `"torch.nn.Linear"`),
  also matched along the class hierarchy. An import path whose top-level package is imported is resolved
  to the class; a string without glob characters is tried both as a name and as a class.
"""

from __future__ import annotations

import fnmatch
import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

__all__ = [
    "DEFAULT_PENALIZED_TYPES",
    "Pattern",
    "normalize_patterns",
    "pattern_matches",
    "select_named_modules",
    "select_named_parameters",
    "select_parameters",
]

Pattern = str | type[nn.Module]
"""One selection rule: a glob on qualified names, an `nn.Module` subclass, or a class name / import path."""

DEFAULT_PENALIZED_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.MultiheadAttention,
)
"""Module types whose weights are penalized by default: linear maps, convolutions (including transposed and
lazy ones) and attention projections. Biases, normalization parameters and embeddings are left alone, the
usual practice."""

_GLOB_CHARS = "*?["
_SHOWN = 20  # names listed in an error message


def _resolve_type(pattern: str) -> Pattern:
    """`"torch.nn.Linear"` -> `nn.Linear` (how a type arrives from a YAML config); else unchanged.

    Only strings without glob characters whose top-level package is already imported are tried, so a
    parameter name such as `"encoder.weight"` never triggers an import.
    """
    module_path, _, attr = pattern.rpartition(".")
    if any(c in pattern for c in _GLOB_CHARS) or not module_path:
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
    """Validate an `include`/`exclude` argument and return it as a tuple of patterns.

    Import paths of `nn.Module` subclasses whose top-level package is imported (`"torch.nn.Linear"`, as
    written in a YAML config) are resolved to the class.

    Args:
        name: the argument's name, for error messages.
        patterns: `None`, one pattern, or a sequence of patterns.

    Returns:
        A tuple of patterns (empty for `None`).

    Raises:
        TypeError: if a pattern is neither a non-empty string nor an `nn.Module` subclass.

    Examples:
        >>> from torch import nn
        >>> normalize_patterns("include", ["head.*", "torch.nn.Linear", nn.Conv2d])
        ('head.*', <class 'torch.nn.modules.linear.Linear'>, <class 'torch.nn.modules.conv.Conv2d'>)
    """
    if patterns is None:
        return ()
    if isinstance(patterns, (str, type)):
        items: list[Any] = [patterns]
    elif isinstance(patterns, Iterable):
        items = list(patterns)
    else:
        raise TypeError(
            f"`{name}` must be a pattern (non-empty str or nn.Module subclass) or a sequence of them, "
            f"got {name}={patterns!r}"
        )
    for p in items:
        if not ((isinstance(p, str) and p) or (isinstance(p, type) and issubclass(p, nn.Module))):
            raise TypeError(
                f"`{name}` entries must be name globs, class names or import paths (non-empty str) or "
                f"nn.Module subclasses, got {p!r} in {name}={patterns!r}"
            )
    return tuple(_resolve_type(p) if isinstance(p, str) else p for p in items)


def _class_matches(cls: type, pattern: Pattern) -> bool:
    if isinstance(pattern, type):
        return issubclass(cls, pattern)
    return any(
        c.__name__ == pattern or f"{c.__module__}.{c.__qualname__}" == pattern for c in cls.__mro__
    )


def pattern_matches(pattern: Pattern, name: str, cls: type | None) -> str | None:
    """How `pattern` matches an item with qualified name `name` whose module class is `cls`.

    Args:
        pattern: a normalized pattern (see
            [`normalize_patterns`][reglight.penalties.selection.normalize_patterns]).
        name: the item's qualified name (a parameter name or a module name).
        cls: the class to match type patterns against (the module, or the module owning the parameter);
            `None` matches no type.

    Returns:
        `"name"` when a string pattern matches `name` as a glob, `"type"` when the pattern matches `cls`
        (a class, or a class name / import path without glob characters), else `None`.

    Examples:
        >>> from torch import nn
        >>> pattern_matches("head.*", "head.weight", nn.Linear), pattern_matches("Linear", "0", nn.Linear)
        ('name', 'type')
        >>> pattern_matches(nn.Conv2d, "0", nn.Linear) is None
        True
    """
    if isinstance(pattern, str):
        if fnmatch.fnmatchcase(name, pattern):
            return "name"
        if any(c in pattern for c in _GLOB_CHARS):
            return None
    if cls is not None and _class_matches(cls, pattern):
        return "type"
    return None


def _shown(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "(none)"
    return ", ".join(names[:_SHOWN]) + (
        f", ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    )


def _select(
    items: Sequence[tuple[str, type | None]],
    include: tuple[Pattern, ...],
    exclude: tuple[Pattern, ...],
    *,
    default: tuple[Pattern, ...] | None,
    by_type: Callable[[str], bool],
    kind: str,
    available: Sequence[str] | None = None,
) -> list[int]:
    """Indices of the selected `items` (in order): the one selection rule behind every selector.

    `include` (or, when it is empty, `default`; `None` means every item) picks items; an item picked only
    through a type match must also pass `by_type`. `exclude` then removes every item it matches. An
    `include` entry that picks nothing is a `ValueError` listing `available` (default: the items' names).
    """
    rules = include or default
    if rules is None:
        picked = set(range(len(items)))
    else:
        picked = set()
        for pattern in rules:
            hits = set()
            for i, (name, cls) in enumerate(items):
                how = pattern_matches(pattern, name, cls)
                if how == "name" or (how == "type" and by_type(name)):
                    hits.add(i)
            if not hits and include:
                shown = pattern if isinstance(pattern, str) else pattern.__qualname__
                names = available if available is not None else [n for n, _ in items]
                raise ValueError(
                    f"`include` entry {shown!r} matches no {kind} (by name glob or by class); "
                    f"available names: {_shown(names)}"
                )
            picked |= hits
    return [
        i
        for i, (name, cls) in enumerate(items)
        if i in picked and not any(pattern_matches(e, name, cls) for e in exclude)
    ]


def _owner_types(model: nn.Module) -> dict[str, type[nn.Module]]:
    """Parameter name -> type of the module that owns it directly."""
    owners: dict[str, type[nn.Module]] = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = type(module)
    return owners


def _not_bias(name: str) -> bool:
    return "bias" not in name.rsplit(".", 1)[-1]


def select_named_parameters(
    model: nn.Module,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """Like [`select_parameters`][reglight.penalties.select_parameters], with the parameters' names.

    Args:
        model: the model.
        include: what to penalize (see [`select_parameters`][reglight.penalties.select_parameters]).
        exclude: what not to penalize (see [`select_parameters`][reglight.penalties.select_parameters]).

    Returns:
        `(name, parameter)` pairs in `model.named_parameters()` order.

    Raises:
        ValueError: if an `include` entry matches no parameter (the message lists the parameter names).
        TypeError: if an entry is not a pattern.

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
    chosen = _select(
        [(n, owners.get(n)) for n, _ in named],
        inc,
        exc,
        default=DEFAULT_PENALIZED_TYPES,
        by_type=_not_bias,
        kind=f"parameter of {type(model).__name__}",
    )
    return [named[i] for i in chosen]


def select_parameters(
    model: nn.Module,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
) -> list[nn.Parameter]:
    """The parameters of `model` a penalty applies to.

    By default: the weights of `Linear`/`Bilinear`, convolution and `MultiheadAttention` modules
    (`DEFAULT_PENALIZED_TYPES`); biases, normalization
    parameters and embeddings are not penalized. `include` replaces that default; each entry is

    - a glob on qualified parameter names (`"encoder.*.weight"`; `*` also matches dots), or
    - a module class, class name or import path (`nn.Linear`, `"Linear"`, `"torch.nn.Linear"`): the
      non-bias parameters owned directly by modules of that class or a subclass.

    An `include` entry that matches nothing is an error, not a silent no-op. `exclude` entries (the same
    patterns; a class removes every parameter its modules own) are removed afterwards. The vocabulary is
    the one of every selector in the library (module `reglight.penalties.selection`).

    Args:
        model: the model.
        include: what to penalize: a pattern or a sequence of patterns; `None` for the default.
        exclude: what not to penalize: a pattern or a sequence of patterns.

    Returns:
        The selected parameters in `model.named_parameters()` order (shared parameters once).

    Raises:
        ValueError: if an `include` entry matches no parameter (the message lists the parameter names).
        TypeError: if an entry is not a pattern.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> [p.shape for p in select_parameters(model, exclude="2.*")]
        [torch.Size([4, 3])]
        >>> [p.shape for p in select_parameters(model, include="Linear", exclude="0.*")]
        [torch.Size([1, 4])]
    """
    return [p for _, p in select_named_parameters(model, include, exclude)]


def select_named_modules(
    model: nn.Module,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
    *,
    default: Pattern | Sequence[Pattern] | None = None,
    where: Callable[[nn.Module], bool] | None = None,
    kind: str = "module",
) -> list[tuple[str, nn.Module]]:
    """The submodules of `model` selected by `include`/`exclude` (the vocabulary of `select_parameters`).

    Globs match qualified module names (`"encoder.*.drop"`, as in `model.named_modules()`); classes, class
    names and import paths match the module's class or a base class. The root module (name `""`) is never
    selected.

    Args:
        model: the model.
        include: which modules to take: a pattern or a sequence of patterns; `None` for `default`.
        exclude: which modules to leave out afterwards.
        default: the patterns used when `include` is `None` (`None`: every candidate).
        where: only modules for which this returns `True` are candidates (e.g. those with a rate).
        kind: how the candidates are called in error messages (e.g. "module with attribute `p`").

    Returns:
        `(name, module)` pairs in `model.named_modules()` order (possibly empty).

    Raises:
        ValueError: if an `include` entry matches no candidate (the message lists the candidates' names,
            or every module name when there is no candidate).
        TypeError: if an entry is not a pattern.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Sequential(nn.Dropout(0.2)))
        >>> [n for n, _ in select_named_modules(model, include=nn.Dropout, exclude="2.*")]
        ['1']
        >>> [n for n, _ in select_named_modules(model, include="2.*")]
        ['2.0']
    """
    inc = normalize_patterns("include", include)
    exc = normalize_patterns("exclude", exclude)
    rules = normalize_patterns("default", default) if default is not None else None
    named = [(n, m) for n, m in model.named_modules() if n]
    candidates = [(n, m) for n, m in named if where is None or where(m)]
    chosen = _select(
        [(n, type(m)) for n, m in candidates],
        inc,
        exc,
        default=rules,
        by_type=lambda _: True,
        kind=f"{kind} in {type(model).__name__}",
        available=[n for n, _ in candidates] or [n for n, _ in named],
    )
    return [candidates[i] for i in chosen]
