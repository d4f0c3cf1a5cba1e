r"""The lasso recipe: sparse linear models for feature selection (`reglight run lasso`).

Feature selection with the lasso as a ready recipe: a linear model with an L1 or
elastic-net penalty on standardized features, trained by minibatch proximal gradient steps
through [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook], with the features it keeps, their
coefficients in standardized and original units, a relaxed-lasso refit that removes the
shrinkage, test metrics for both, and the regularization path.

Objective (scikit-learn's scaling; $\rho$ = `l1_ratio`, $z$ the standardized features):

$$
\min_{W, b}\ \frac{1}{n}\sum_{i=1}^n \ell(y_i, W z_i + b)
    + \alpha\rho\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2
$$

- regression, $\ell = \tfrac12(y - \eta)^2$: scikit-learn's `Lasso(alpha)` /
  `ElasticNet(alpha, l1_ratio)` on the same standardized data;
- binary / multinomial classification, logistic / softmax loss: `LogisticRegression(C=1/(nα),
  l1_ratio=ρ)`.

Modules, one job each:

- `model`: [`SparseLinearModel`][reglight.recipes.lasso.SparseLinearModel], the LightningModule;
- `solver`: the full-batch (F)ISTA step
  ([`FullBatchProximalGradient`][reglight.recipes.lasso.FullBatchProximalGradient]);
- `cv`: `alpha` by cross-validation and the regularization path (`reglight.linear`);
- `refit`: the relaxed-lasso refit;
- `metrics`: the torchmetrics collections of each split;
- `report`: the selected features and the printed tables; `figures`: the path figure;
- `objective`, `scaling`: the data term, standardization and the step size;
- `threads`: a thread count scoped to the model's own computations;
- `data` ([`TabularDataModule`][reglight.recipes.lasso.TabularDataModule]), `tables` (scikit-learn's
  data, CSV/Parquet files) and `synthetic` (sparse problems): the data.

The penalty is [`ElasticNet`][reglight.penalties.ElasticNet]`(alpha, l1_ratio)` itself: reglight's
penalties use scikit-learn's parametrization.
"""

from reglight.recipes.lasso.cv import cross_validate_alpha, regularization_path
from reglight.recipes.lasso.data import BUILTIN_DATASETS, TabularDataModule, split_indices
from reglight.recipes.lasso.figures import CVCurve, path_figure
from reglight.recipes.lasso.metrics import LogLoss, metric_collection
from reglight.recipes.lasso.model import SparseLinearModel
from reglight.recipes.lasso.objective import data_loss
from reglight.recipes.lasso.refit import refit_least_squares, refit_logistic, relaxed_refit
from reglight.recipes.lasso.report import Convergence, SelectedFeature
from reglight.recipes.lasso.scaling import dataset_tensors, lipschitz_constant, standardization
from reglight.recipes.lasso.solver import FullBatchProximalGradient
from reglight.recipes.lasso.synthetic import SparseData, make_sparse_data
from reglight.recipes.lasso.tables import TabularData, load_builtin, load_table
from reglight.recipes.lasso.threads import with_model_threads

__all__ = [
    "BUILTIN_DATASETS",
    "CVCurve",
    "Convergence",
    "FullBatchProximalGradient",
    "LogLoss",
    "SelectedFeature",
    "SparseData",
    "SparseLinearModel",
    "TabularData",
    "TabularDataModule",
    "cross_validate_alpha",
    "data_loss",
    "dataset_tensors",
    "lipschitz_constant",
    "load_builtin",
    "load_table",
    "make_sparse_data",
    "metric_collection",
    "path_figure",
    "refit_least_squares",
    "refit_logistic",
    "regularization_path",
    "relaxed_refit",
    "split_indices",
    "standardization",
    "with_model_threads",
]
