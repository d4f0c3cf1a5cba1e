"""`ConvergenceWarning` and the record of solves that stopped at `max_iter` before their tolerance.

An iterative solve that reaches `max_iter` with its optimality (KKT) conditions still violated by
more than the tolerance calls [`record`][reglight.linear._convergence.record]; inside a
[`collect`][reglight.linear._convergence.collect] block (one per public call: a path, a fit, a
cross-validation) the records are summed into one warning at the end of the block, otherwise each
warns at once.

Examples:
    >>> import warnings
    >>> from sklearn.exceptions import ConvergenceWarning as sklearn_warning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     with collect("lasso_path", tol=1e-10, max_iter=2):
    ...         record(3e-4)
    ...         record(1e-3)
    >>> str(caught[0].message).split(":")[0]
    'lasso_path stopped at max_iter=2 before its tolerance for 2 of its solves'
    >>> issubclass(caught[0].category, sklearn_warning)
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = ["ConvergenceWarning", "collect", "record"]


class ConvergenceWarning(_SklearnConvergenceWarning):
    """An iterative solver stopped before its tolerance.

    A subclass of scikit-learn's `sklearn.exceptions.ConvergenceWarning`, so filters written for
    scikit-learn (`warnings.simplefilter("ignore", ConvergenceWarning)`) apply to reglight too.
    """


@dataclass
class _Record:
    solver: str
    tol: float
    max_iter: int
    failed: int = 0
    worst: float = 0.0


_ACTIVE: ContextVar[_Record | None] = ContextVar("reglight_linear_convergence", default=None)


def _message(rec: _Record) -> str:
    count = "" if rec.failed <= 1 else f" for {rec.failed} of its solves"
    cap = f"max_iter={rec.max_iter}" if rec.max_iter > 0 else "its iteration cap"
    return (
        f"{rec.solver} stopped at {cap} before its tolerance{count}: the KKT "
        f"violation reached is {rec.worst:.3g} > tol {rec.tol:.3g}. Raise `max_iter` (or loosen "
        "`tol`); the coefficients are not the minimizer."
    )


@contextmanager
def collect(solver: str, *, tol: float, max_iter: int) -> Iterator[None]:
    """Gather the non-converged solves inside the block into one warning (nested blocks join the outer).

    Args:
        solver: The public function or estimator named in the warning.
        tol: The tolerance, in the units of the KKT violation that is recorded.
        max_iter: The iteration cap.
    """
    if _ACTIVE.get() is not None:
        yield
        return
    rec = _Record(solver, float(tol), int(max_iter))
    token = _ACTIVE.set(rec)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
    if rec.failed:
        warnings.warn(_message(rec), ConvergenceWarning, stacklevel=4)


def record(violation: float, tol: float | None = None) -> None:
    """Note a solve that hit `max_iter` with the KKT conditions violated by `violation`.

    Args:
        violation: The largest violation of the optimality conditions reached.
        tol: The tolerance in the same units (the block's when `None`; used for the message).
    """
    rec = _ACTIVE.get()
    if rec is None:
        one = _Record("a reglight.linear solver", float(tol or 0.0), 0, 1, float(violation))
        warnings.warn(_message(one), ConvergenceWarning, stacklevel=3)
        return
    rec.failed += 1
    rec.worst = max(rec.worst, float(violation))
    if tol is not None:
        rec.tol = float(tol)
