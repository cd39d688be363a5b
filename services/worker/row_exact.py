"""Which models batch by default: those whose answer for a row cannot change when other rows share its call.

A replica merges concurrent requests into one model call only where each request still gets, bit for bit,
the answer it gets alone (which is `mlflow models serve`'s answer). That holds by construction where every
step of the model computes each row by itself in a fixed order:

- XGBoost and LightGBM tree boosters: each row walks every tree and sums its leaves in tree order.
- scikit-learn trees and tree ensembles run one thread at a time (a forest with `n_jobs` adds its trees'
  votes in thread order, batched or not), and the transformers that work element by element or pick
  columns: scalers, encoders, imputers, discretizers, feature selectors, and Pipelines, ColumnTransformers
  and FeatureUnions of those.

- transformers text-classification pipelines without a batch size: the pipeline runs each text of a list
  by itself, as a batch of one, with no padding to its neighbours' length.

It does not hold for matrix products (linear models, SVMs, MLPs, PCA, torch, other transformers): BLAS sums a
one-row product (gemv) in another order than a many-row one (gemm), so the last digits of a probability or a
regression differ (measured here: about half of the rows of a LinearRegression). Those stay unbatched,
with one exception that is exact by proof rather than by construction: a linear classifier answering
labels. Its label can only differ where two class scores are within rounding of each other, so `LabelGuard`
computes that rounding bound for every row of a batch and has the rows within it scored alone.

`max_batch_size` on the served entity overrides this: 1 never batches, more asserts the model is row-wise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_BATCH_ROWS = 64   # the cap on a merged call's rows: at c=64 one-row requests, a batch per round


@dataclass(frozen=True)
class BatchPolicy:
    rows: int                          # the most rows in one merged call; 1: every request alone
    reason: str                        # why, for the replica's log
    guard: "LabelGuard | None" = None  # set where merged labels are checked row by row
    row_at_a_time: bool = False        # a merged call still runs the model on one row at a time

    @property
    def wide_calls(self) -> bool:
        """Whether one model call may compute many rows in one tensor operation."""
        return self.rows > 1 and not self.row_at_a_time


def batch_policy(pyfunc_model, max_batch_size: int = 0) -> BatchPolicy:
    """The served entity's setting where it gave one (max_batch_size > 0), else the model's default."""
    if max_batch_size == 1:
        return BatchPolicy(1, "batching is off (max_batch_size 1)")
    if max_batch_size > 1:
        return BatchPolicy(max_batch_size, f"batching up to {max_batch_size} rows, as the served entity asks")
    try:
        exact, why, guard = _row_exactness(pyfunc_model)
        row_at_a_time = pyfunc_model.loader_module == "mlflow.transformers"
    except Exception as exc:   # noqa: BLE001 - an unusual model object: unbatched is always exact
        return BatchPolicy(1, f"not batched by default: cannot inspect the model ({type(exc).__name__})")
    if not exact:
        return BatchPolicy(1, f"not batched by default: {why} (max_batch_size > 1 turns it on)")
    return BatchPolicy(DEFAULT_BATCH_ROWS, f"batching up to {DEFAULT_BATCH_ROWS} rows by default: {why}", guard,
                       row_at_a_time)


def _row_exactness(pyfunc_model) -> tuple[bool, str, "LabelGuard | None"]:
    metadata = pyfunc_model.metadata
    if getattr(metadata, "_is_signature_from_type_hint", lambda: False)() \
            or getattr(metadata, "_is_type_hint_from_example", lambda: False)():
        return False, "the model reads its input through type hints", None
    loader = pyfunc_model.loader_module
    implementation = getattr(pyfunc_model, "_model_impl", None)
    raw = implementation.get_raw_model() if hasattr(implementation, "get_raw_model") else None
    if loader == "mlflow.xgboost" and raw is not None:
        booster = raw.get_booster() if hasattr(raw, "get_booster") else raw
        import json

        kind = json.loads(booster.save_config())["learner"]["gradient_booster"]["name"]
        if kind in ("gbtree", "dart"):
            return True, f"an XGBoost {kind} model scores each row by itself", None
        return False, f"an XGBoost {kind} model", None
    if loader == "mlflow.lightgbm" and raw is not None:
        return True, "a LightGBM model scores each row by itself", None
    if loader == "mlflow.transformers" and implementation is not None:
        return _pipeline_exactness(implementation, metadata)
    if loader == "mlflow.sklearn" and raw is not None:
        predict_fn = metadata.flavors.get("python_function", {}).get("predict_fn") or "predict"
        return _sklearn_exactness(raw, predict_fn)
    return False, f"the {loader} flavor's answers may depend on the batch", None


def _pipeline_exactness(wrapper, metadata) -> tuple[bool, str, None]:
    """A transformers text-classification pipeline runs each text of a list through tokenizer, model and
    postprocessing by itself (batches of one: no padding to a longer neighbour), so a merged call gives each
    row what it gets alone, unless the pipeline was built, configured or may be asked to batch."""
    pipeline = getattr(wrapper, "pipeline", None)
    kind = type(pipeline).__name__
    if kind != "TextClassificationPipeline" or not type(pipeline).__module__.startswith("transformers."):
        return False, f"a transformers {kind} may batch or answer several rows per input", None
    configured = dict(getattr(wrapper, "model_config", None) or {}).get("batch_size")
    params = metadata.get_params_schema() if hasattr(metadata, "get_params_schema") else None
    if getattr(pipeline, "_batch_size", None) not in (None, 1) or configured not in (None, 1) \
            or any(param.name == "batch_size" for param in (params.params if params is not None else [])):
        return False, f"the {kind} may run several texts padded into one batch (batch_size)", None
    return True, f"a transformers {kind} scores each text by itself (batches of one)", None


def _sklearn_exactness(estimator, predict_fn: str) -> tuple[bool, str, "LabelGuard | None"]:
    from sklearn.linear_model._base import LinearClassifierMixin
    from sklearn.pipeline import Pipeline

    odd = _first_inexact(estimator)
    if odd is None:
        return True, f"every step of the {type(estimator).__name__} scores each row by itself", None
    if predict_fn != "predict":
        return False, f"{type(odd).__name__}.{predict_fn} sums in a batch-dependent order", None
    head, final = (estimator[:-1], estimator.steps[-1][1]) if isinstance(estimator, Pipeline) else (None, estimator)
    if isinstance(final, LinearClassifierMixin) and (head is None or _first_inexact(head) is None) \
            and final.get_params().get("n_jobs") in (None, 1):
        return True, f"{type(final).__name__} answers labels, checked against rounding row by row", \
            LabelGuard(head, final)
    return False, f"{type(odd).__name__} sums in a batch-dependent order", None


def _first_inexact(estimator) -> Any | None:
    """The first part of a scikit-learn model whose rows may depend on the batch, or None."""
    from sklearn import ensemble, impute, preprocessing, tree
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_selection import SelectorMixin
    from sklearn.pipeline import FeatureUnion, Pipeline

    if estimator is None or isinstance(estimator, str):   # "passthrough", "drop"
        return None
    if isinstance(estimator, Pipeline):
        parts = [step for _, step in estimator.steps]
    elif isinstance(estimator, ColumnTransformer):
        parts = [step for _, step, _ in getattr(estimator, "transformers_", estimator.transformers)]
    elif isinstance(estimator, FeatureUnion):
        parts = [step for _, step in estimator.transformer_list]
    else:
        parts = None
    if parts is not None:
        return next((odd for odd in map(_first_inexact, parts) if odd is not None), None)
    exact_types = (
        tree.BaseDecisionTree, ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor,
        ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor,
        preprocessing.StandardScaler, preprocessing.MinMaxScaler, preprocessing.MaxAbsScaler,
        preprocessing.RobustScaler, preprocessing.OneHotEncoder, preprocessing.OrdinalEncoder,
        preprocessing.KBinsDiscretizer, preprocessing.Binarizer, impute.SimpleImputer, impute.MissingIndicator,
        SelectorMixin,
    )
    forests = (ensemble.RandomForestClassifier, ensemble.RandomForestRegressor, ensemble.ExtraTreesClassifier,
               ensemble.ExtraTreesRegressor)
    if type(estimator).__module__.startswith("sklearn.") and isinstance(estimator, exact_types):
        return None
    if type(estimator).__module__.startswith("sklearn.") and isinstance(estimator, forests) \
            and estimator.n_jobs in (None, 1):
        return None
    return estimator


class LabelGuard:
    """Labels of a linear classifier (after exact steps) for a batch, and which rows could differ alone.

    A score is a sum of k products and the intercept; summed in any order, it is within gamma(k+1) * M of
    the exact value, where M = sum(|x_i * w_i|) + |b| and gamma(n) = n*u / (1 - n*u) (u: unit roundoff).
    Two orders are within twice that of each other. So a binary label (score > 0) cannot differ where
    |score| > 2 gamma M, nor an argmax where the best score leads the next by more than 4 gamma max(M).
    The bound is doubled once more for the rounding of its own computation.
    """

    def __init__(self, head, classifier):
        self._head, self._classifier = head, classifier

    def predict(self, data) -> tuple[Any, Any]:
        """(labels as the model's predict returns them, a boolean array: rows to score alone)."""
        import numpy as np
        import scipy.sparse

        features = self._head.transform(data) if self._head is not None else data
        labels = self._classifier.predict(features)   # what Pipeline.predict computes, step for step
        raw_scores = np.asarray(self._classifier.decision_function(features))
        scores = raw_scores.astype(np.float64)
        if scipy.sparse.issparse(features):
            magnitude_x = abs(features).astype(np.float64)
        else:
            magnitude_x = np.abs(np.asarray(features, dtype=np.float64))
        coef = np.atleast_2d(np.abs(np.asarray(self._classifier.coef_, dtype=np.float64)))
        intercept = np.abs(np.asarray(self._classifier.intercept_, dtype=np.float64))
        magnitude = np.asarray(magnitude_x @ coef.T) + intercept
        # The scores were summed in their own precision (float32 weights and features round far coarser).
        precision = raw_scores.dtype if raw_scores.dtype.kind == "f" else np.dtype(np.float64)
        unit_roundoff = np.finfo(precision).eps / 2
        terms = coef.shape[1] + 1
        gamma = terms * unit_roundoff / (1 - terms * unit_roundoff)
        if scores.ndim == 1:
            safe = np.abs(scores) > 4 * gamma * magnitude[:, 0]
        else:
            top_two = np.partition(scores, -2, axis=1)[:, -2:]
            safe = (top_two[:, 1] - top_two[:, 0]) > 8 * gamma * magnitude.max(axis=1)
        return labels, ~safe   # NaN scores compare False: never safe
