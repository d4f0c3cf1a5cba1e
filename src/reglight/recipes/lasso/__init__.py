r"""The lasso recipe: sparse linear models for feature selection (``reglight run lasso``).

The seed's "feature selection via the lasso" as a ready recipe: a linear model with an L1 or
elastic-net penalty on standardized features, trained by minibatch proximal gradient steps
through [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook], with the features it keeps, their
coefficients in standardized and original units, a relaxed-lasso refit that removes the
shrinkage, test metrics for both, and the regularization path.

Objective (scikit-learn's scaling; $\rho$ = ``l1_ratio``, $z$ the standardized features):

$$
\min_{W, b}\ \frac{1}{n}\sum_{i=1}^n \ell(y_i, W z_i + b)
    + \alpha\rho\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2
$$

- regression, $\ell = \tfrac12(y - \eta)^2$: scikit-learn's ``Lasso(alpha)`` /
  ``ElasticNet(alpha, l1_ratio)`` on the same standardized data;
- binary / multinomial classification, logistic / softmax loss: ``LogisticRegression(C=1/(nα),
  l1_ratio=ρ)``.

Pieces: [`SparseLinearModel`][reglight.recipes.lasso.SparseLinearModel] (the LightningModule),
[`TabularDataModule`][reglight.recipes.tabular.TabularDataModule] (data),
[`sklearn_penalty`][reglight.recipes.lasso.sklearn_penalty] (the penalty mapping), the refit
functions and the path figure.
"""

from reglight.recipes.lasso.figures import CVCurve, path_figure
from reglight.recipes.lasso.model import SelectedFeature, SparseLinearModel
from reglight.recipes.lasso.objective import (
    data_loss,
    penalty_strength,
    penalty_value,
    sklearn_penalty,
)
from reglight.recipes.lasso.refit import refit_least_squares, refit_logistic
from reglight.recipes.lasso.scaling import dataset_tensors, lipschitz_constant, standardization

__all__ = [
    "CVCurve",
    "SelectedFeature",
    "SparseLinearModel",
    "data_loss",
    "dataset_tensors",
    "lipschitz_constant",
    "path_figure",
    "penalty_strength",
    "penalty_value",
    "refit_least_squares",
    "refit_logistic",
    "sklearn_penalty",
    "standardization",
]
