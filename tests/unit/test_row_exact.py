"""Which models batch by default, and the proof that they may: for every default-on model, concurrent
requests scored through merged calls get byte for byte the answers they get alone, on randomized rows
(hypothesis), float outputs included; models whose rows can change in a batch stay unbatched; and the label
guard catches the rows whose label a batch could flip."""

from __future__ import annotations

import asyncio
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.worker.core import CallerCheck, Predictor
from services.worker.row_exact import DEFAULT_BATCH_ROWS, LabelGuard, batch_policy

TOKEN = "router-credential"
CALLERS = CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest())
NUMERIC = ["a", "b", "c", "d"]


def _numeric(seed=0, rows=120) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)), columns=NUMERIC)
    return frame, ((frame.a + frame.b > 0).astype(int) + (frame.c > 0.5).astype(int)).to_numpy()


def _mixed(seed=0, rows=120) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 90, rows), "income": rng.normal(5e4, 1e4, rows),
                          "city": rng.choice(["paris", "lyon", "nice"], rows), "member": rng.random(rows) > 0.5})
    return frame, ((frame.income > 5e4) ^ frame.member).astype(int).to_numpy()


def _mixed_pipeline(final):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "member"])])
    return Pipeline([("columns", columns), ("model", final)])


def _save(tmp_path_factory, flavor: str, model, frame, prediction, **kwargs):
    import mlflow
    from mlflow.models import infer_signature

    path = tmp_path_factory.mktemp(flavor.replace(".", "_")) / "model"
    requirements = {"sklearn": ["scikit-learn"], "xgboost": ["xgboost"], "lightgbm": ["lightgbm"]}.get(flavor, [])
    if flavor == "sklearn":   # the tree models' node arrays are not among skops' trusted types
        kwargs["serialization_format"] = mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
    getattr(mlflow, flavor).save_model(model, str(path), signature=infer_signature(frame, prediction),
                                       pip_requirements=requirements or ["mlflow"], **kwargs)
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict:
    """name -> (loaded pyfunc model, a frame of its inputs, whether it batches by default)."""
    import lightgbm
    import xgboost
    from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    numeric, labels = _numeric()
    mixed, mixed_labels = _mixed()
    target = numeric.a * 3.1 - numeric.d / 7 + numeric.b * numeric.c
    out = {}

    def add(name, flavor, model, frame, predicted, batches, **kwargs):
        out[name] = (_save(tmp_path_factory, flavor, model, frame, predicted, **kwargs), frame, batches)

    forest = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(numeric, labels)
    add("forest_proba", "sklearn", forest, numeric, forest.predict_proba(numeric), True,
        pyfunc_predict_fn="predict_proba")
    boosted = GradientBoostingRegressor(n_estimators=10, max_depth=2).fit(numeric, target)
    add("gradient_boosting_regressor", "sklearn", boosted, numeric, boosted.predict(numeric), True)
    trees = _mixed_pipeline(HistGradientBoostingClassifier(max_iter=10)).fit(mixed, mixed_labels)
    add("mixed_tree_pipeline_proba", "sklearn", trees, mixed, trees.predict_proba(mixed), True,
        pyfunc_predict_fn="predict_proba")
    linear = _mixed_pipeline(LogisticRegression(max_iter=300)).fit(mixed, mixed_labels)
    add("mixed_linear_pipeline_labels", "sklearn", linear, mixed, linear.predict(mixed), True)
    add("mixed_linear_pipeline_proba", "sklearn", linear, mixed, linear.predict_proba(mixed), False,
        pyfunc_predict_fn="predict_proba")
    regression = LinearRegression().fit(numeric, target)
    add("linear_regression", "sklearn", regression, numeric, regression.predict(numeric), False)
    xgb = xgboost.XGBRegressor(n_estimators=12, max_depth=3).fit(mixed[["age", "income"]], target)
    add("xgboost_regressor", "xgboost", xgb, mixed[["age", "income"]], xgb.predict(mixed[["age", "income"]]), True)
    lgb = lightgbm.LGBMRegressor(n_estimators=12, num_leaves=7, verbose=-1).fit(mixed[["age", "income"]], target)
    add("lightgbm_regressor", "lightgbm", lgb, mixed[["age", "income"]], lgb.predict(mixed[["age", "income"]]),
        True)
    return out


@pytest.mark.parametrize("name", ["forest_proba", "gradient_boosting_regressor", "mixed_tree_pipeline_proba",
                                  "mixed_linear_pipeline_labels", "mixed_linear_pipeline_proba",
                                  "linear_regression", "xgboost_regressor", "lightgbm_regressor"])
def test_the_default_is_on_exactly_where_batching_cannot_change_an_answer(zoo, name):
    model, _, batches = zoo[name]
    policy = batch_policy(model)
    assert (policy.rows == DEFAULT_BATCH_ROWS) is batches and (policy.rows == 1) is not batches, policy.reason
    assert (policy.guard is not None) is (name == "mixed_linear_pipeline_labels")


def test_the_served_entity_setting_overrides_the_default(zoo):
    model = zoo["forest_proba"][0]
    assert batch_policy(model, 1).rows == 1 and batch_policy(model, 16).rows == 16
    assert batch_policy(zoo["linear_regression"][0], 8).rows == 8     # the user asserts row-wise


def test_custom_pyfunc_and_torch_are_not_batched_by_default(tmp_path):
    import mlflow
    import torch

    from tests.support.batch_model import save_row_recorder

    save_row_recorder(str(tmp_path / "recorder"), str(tmp_path / "rows.log"))
    assert batch_policy(mlflow.pyfunc.load_model(str(tmp_path / "recorder"))).rows == 1
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    mlflow.pytorch.save_model(net, str(tmp_path / "torch"), pip_requirements=["torch"],
                              input_example=np.zeros((1, 4), dtype=np.float32))
    assert batch_policy(mlflow.pyfunc.load_model(str(tmp_path / "torch"))).rows == 1


def _value(column: str, extreme: bool):
    if column in ("age",):
        return st.integers(-1000, 1000)
    if column == "city":
        return st.sampled_from(["paris", "lyon", "nice", "rome"])
    if column == "member":
        return st.booleans()
    if extreme:   # values some models refuse (a float32 tree: too large): the batch falls back
        return st.sampled_from([1e300, -1e300, 5e-324, 1.7976931348623157e308])
    return st.one_of(st.floats(-1e6, 1e6, allow_nan=False, width=64),
                     st.floats(-1e-6, 1e-6, allow_nan=False), st.sampled_from([0.0, -0.0]))


def _bodies(frame: pd.DataFrame, rows: list[dict]) -> list[bytes]:
    columns = list(frame.columns)
    bodies = []
    for i, row in enumerate(rows):
        record = {c: (float(row[c]) if frame[c].dtype.kind == "f" else row[c]) for c in columns}
        body = {"dataframe_split": {"columns": columns, "data": [[record[c] for c in columns]]}} if i % 2 \
            else {"dataframe_records": [record]}
        bodies.append(json.dumps(body).encode())
    return bodies


def _rows_strategy(frame: pd.DataFrame):
    ordinary = st.fixed_dictionaries({c: _value(c, False) for c in frame.columns})
    extreme = st.fixed_dictionaries({c: _value(c, True) for c in frame.columns})
    # At least 6: the first request goes alone, and the rest alternate between two formats that never merge.
    return st.tuples(st.lists(ordinary, min_size=6, max_size=40), st.lists(extreme, max_size=2))


@pytest.mark.parametrize("name", ["forest_proba", "gradient_boosting_regressor", "mixed_tree_pipeline_proba",
                                  "mixed_linear_pipeline_labels", "xgboost_regressor", "lightgbm_regressor"])
def test_default_batched_answers_are_the_unbatched_ones_on_random_rows(zoo, name):
    model, frame, _ = zoo[name]
    merged = []

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows=_rows_strategy(frame))
    def check(rows):
        ordinary, extreme = rows
        bodies = _bodies(frame, ordinary + extreme)

        together, expected, stats = scored_together_and_alone(model, bodies)
        if not extreme:
            merged.append(stats)
        assert together == expected

    check()
    # It did merge, and merged calls of ordinary rows held.
    assert max(rows for rows, _ in merged) > 1 and all(fallbacks == 0 for _, fallbacks in merged)


def scored_together_and_alone(model, bodies: list[bytes]) -> tuple[list, list, tuple[int, int]]:
    """Each body's answer scored concurrently on a batching Predictor and scored alone on an unbatched one,
    and the batching one's (largest merged rows, fallbacks)."""
    async def run():   # a Predictor belongs to one event loop: one pair per call
        batched = Predictor(model, 2, 256, CALLERS)
        alone = Predictor(model, 2, 256, CALLERS, max_batch_size=1)
        try:
            together = await asyncio.gather(*(batched.predict(TOKEN, b, "application/json") for b in bodies))
            stats = (batched.batch_stats.largest_rows, batched.batch_stats.fallbacks)
            return together, [await alone.predict(TOKEN, b, "application/json") for b in bodies], stats
        finally:
            batched.close()
            alone.close()

    return asyncio.run(run())


def test_the_label_guard_flags_every_row_a_batch_could_flip():
    from sklearn.linear_model import LogisticRegression

    # Scores that cancel: 1e16 + 1 - 1e16 is 0, 1 or 2 depending on the order of the sum.
    classifier = LogisticRegression().fit(np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), [0, 1])
    classifier.coef_ = np.array([[1.0, 1.0, 1.0]])
    classifier.intercept_ = np.array([-1.0])
    rows = np.array([[1e16, 1.0, -1e16], [1e16, 2.0, -1e16], [3.0, 1.0, 1.0], [-5.0, 0.5, 0.25], [0.5, 0.25, 0.25]])
    labels, unsure = LabelGuard(None, classifier).predict(rows)
    assert list(unsure) == [True, True, False, False, True]   # the last is exactly on the boundary
    alone = np.concatenate([classifier.predict(rows[i:i + 1]) for i in range(len(rows))])
    assert (labels[~unsure] == alone[~unsure]).all()


def test_a_guarded_batch_rescores_the_unsure_rows_alone(tmp_path):
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0], "z": [0.0, 1.0]})
    classifier = LogisticRegression().fit(frame, [0, 1])
    classifier.coef_, classifier.intercept_ = np.array([[1.0, 1.0, 1.0]]), np.array([-1.0])
    mlflow.sklearn.save_model(classifier, str(tmp_path / "m"), signature=infer_signature(frame, [0, 1]),
                              pip_requirements=["scikit-learn"])
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    rows = [[1e16, 1.0, -1e16], [3.0, 1.0, 1.0], [1e16, 2.0, -1e16], [-5.0, 0.5, 0.25]] * 3
    bodies = [json.dumps({"dataframe_split": {"columns": ["x", "y", "z"], "data": [r]}}).encode() for r in rows]

    async def run():
        batched = Predictor(model, 2, 256, CALLERS)
        alone = Predictor(model, 2, 256, CALLERS, max_batch_size=1)
        assert batched.batch_policy.guard is not None
        together = await asyncio.gather(*(batched.predict(TOKEN, b, "application/json") for b in bodies))
        assert together == [await alone.predict(TOKEN, b, "application/json") for b in bodies]
        return batched.batch_stats

    stats = asyncio.run(run())
    assert stats.largest_rows > 1 and stats.rescored >= 2   # the cancelling rows of a merged call went alone
