"""Full-batch sparse linear models in torch (CPU or GPU), callable with NumPy arrays or tensors.

- Paths: [`lasso_path`][reglight.linear.lasso_path], [`enet_path`][reglight.linear.enet_path]
  (scikit-learn's objective scaling, solved exactly by an active-set Newton method with
  strong-rule screening and a KKT check), [`alpha_grid`][reglight.linear.alpha_grid].
- Single fits: [`ElasticNet`][reglight.linear.ElasticNet], [`Lasso`][reglight.linear.Lasso],
  [`elastic_net`][reglight.linear.elastic_net].
- Classification: [`LogisticElasticNet`][reglight.linear.LogisticElasticNet] (binary and
  multinomial), [`logistic_path`][reglight.linear.logistic_path].
- Model selection: [`enet_cv`][reglight.linear.enet_cv] / [`ElasticNetCV`][reglight.linear.ElasticNetCV]
  (minimum and one-standard-error rules), [`logistic_cv`][reglight.linear.logistic_cv],
  [`stability_selection`][reglight.linear.stability_selection].

The estimators are scikit-learn estimators (`clone`, `Pipeline`, `GridSearchCV`); every public
function and estimator converts its inputs once and answers in the kind of its `X` (NumPy in, NumPy out;
tensors in, tensors out on the computation device). `n_threads` sets torch's intra-op threads for one
call; `None` leaves them alone. This package does not import Lightning.

A solve that reaches `max_iter` with its optimality (KKT) conditions violated by more than `tol`
warns with [`ConvergenceWarning`][reglight.linear.ConvergenceWarning] (a subclass of scikit-learn's,
so the same filters apply), naming the violation reached and the tolerance.

Examples:
    >>> import numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> from reglight.linear import Lasso
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = Lasso(alpha=1.0).fit(X, y)
    >>> np.flatnonzero(model.coef_).tolist()
    [2, 3, 8]
"""

from reglight.linear._convergence import ConvergenceWarning
from reglight.linear.cv import (
    CVResult,
    ElasticNetCV,
    LassoCV,
    LogisticElasticNetCV,
    enet_cv,
    kfold_indices,
    logistic_cv,
    select_alpha,
)
from reglight.linear.logistic import (
    LogisticElasticNet,
    logistic_alpha_max,
    logistic_enet,
    logistic_path,
)
from reglight.linear.models import ElasticNet, Lasso, elastic_net
from reglight.linear.path import alpha_grid, enet_dual_gap, enet_objective, enet_path, lasso_path
from reglight.linear.stability import StabilityResult, stability_selection

__all__ = [
    "CVResult",
    "ConvergenceWarning",
    "ElasticNet",
    "ElasticNetCV",
    "Lasso",
    "LassoCV",
    "LogisticElasticNet",
    "LogisticElasticNetCV",
    "StabilityResult",
    "alpha_grid",
    "elastic_net",
    "enet_cv",
    "enet_dual_gap",
    "enet_objective",
    "enet_path",
    "kfold_indices",
    "lasso_path",
    "logistic_alpha_max",
    "logistic_cv",
    "logistic_enet",
    "logistic_path",
    "select_alpha",
    "stability_selection",
]
