"""The direct path for models whose signature is one unnamed numeric tensor (PyTorch and Keras models logged
from a numpy example): the array it builds of an `inputs` request is, bit for bit, dtype and shape, the one
MLflow's parse and schema enforcement hand the model, on random nested lists of every JSON value (hypothesis);
where MLflow converts differently or refuses, it declines; and the scorer's answers are MLflow's scoring
server's, byte for byte, for a PyTorch MLP and a scikit-learn model with tensor signatures."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.worker.direct_scoring import DirectScorer
from services.worker.direct_tensor import Tensor, build_tensor, takes
from tests.unit.test_direct_scoring import _mlflow_answer

logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::DeprecationWarning")

SHAPES = [(-1, 4), (-1,), (-1, 2, -1), (2, 2), (-1, 1)]
DTYPES = ["float32", "float64", "int64", "int32", "uint8", "bool"]
SCALARS = st.one_of(st.integers(-300, 300), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, width=64),
                    st.sampled_from([0.0, -0.0, 1e-45, 3.5e38, 1e39, 0.5, 1.5, 2.5, True, False, None]),
                    st.sampled_from(["1.5", "x", "", "nan", "7"]), st.just({}), st.just({"a": 1}))


def _nested(depth: int):
    return SCALARS if depth == 0 else st.lists(_nested(depth - 1), max_size=5)


def _regular(shape: tuple[int, ...]):
    """A well-formed nested list of the spec's shape (-1: one to four), of values numpy converts."""
    sizes = [st.integers(1, 4) if size == -1 else st.just(size) for size in shape]
    values = st.one_of(st.integers(-100, 100), st.floats(-1e6, 1e6), st.booleans())
    return st.tuples(*sizes).flatmap(
        lambda dims: st.lists(values, min_size=int(np.prod(dims)), max_size=int(np.prod(dims)))
        .map(lambda flat: np.array(flat, dtype=object).reshape(dims).tolist()))


def _mlflows_array(tensor: Tensor, inputs):
    """What MLflow's scoring server hands the model for `{"inputs": inputs}`, or the exception it raises."""
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from mlflow.types import Schema, TensorSpec

    schema = Schema([TensorSpec(np.dtype(tensor.dtype), tensor.shape)])
    try:
        return _enforce_schema(infer_and_parse_data({"inputs": inputs}, schema), schema)
    except Exception as exc:   # noqa: BLE001 - any refusal
        return exc


def _assert_same(ours: np.ndarray, theirs) -> None:
    assert isinstance(theirs, np.ndarray), f"MLflow refused what the direct path took: {theirs!r}"
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    assert ours.tobytes() == theirs.tobytes()   # bit for bit: -0.0, NaN and rounding included


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(SHAPES), st.sampled_from(DTYPES), st.integers(0, 3).flatmap(_nested))
def test_arrays_are_mlflows_for_any_inputs(shape, dtype, inputs):
    tensor = Tensor(np.dtype(dtype), shape)
    ours = build_tensor(tensor, inputs)
    if ours is not None:
        _assert_same(ours, _mlflows_array(tensor, inputs))


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_well_formed_inputs_are_taken(data):
    shape, dtype = data.draw(st.sampled_from(SHAPES)), data.draw(st.sampled_from(DTYPES))
    inputs = data.draw(_regular(shape))
    tensor = Tensor(np.dtype(dtype), shape)
    theirs = _mlflows_array(tensor, inputs)
    ours = build_tensor(tensor, inputs)
    if isinstance(theirs, np.ndarray):
        assert ours is not None, f"declined {inputs} for {dtype} {shape}"
        _assert_same(ours, theirs)
    else:   # e.g. a float out of a small integer type's range
        assert ours is None


def test_what_is_left_to_mlflow():
    tensor = Tensor(np.dtype("float32"), (-1, 4))
    for declined in ([], [[1, 2, 3]], [1, 2, 3, 4], [[1, 2], [3, 4, 5, 6]], [{"a": 1}], "1,2,3,4", 5,
                     [["x", 1, 2, 3]], [[{}, 1, 2, 3]]):
        assert build_tensor(tensor, declined) is None, declined
    assert not takes(np.dtype("O")) and not takes(np.dtype("U8")) and takes(np.dtype("float16"))


# ---- the scorer, against MLflow's scoring server ----

@pytest.fixture(scope="module")
def tensor_models(tmp_path_factory) -> dict:
    import mlflow
    import torch
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec
    from sklearn.linear_model import LogisticRegression

    features = np.random.default_rng(3).normal(size=(32, 4)).astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    with torch.no_grad():
        output = net(torch.from_numpy(features)).numpy()
    models = {}
    path = tmp_path_factory.mktemp("torch") / "model"
    mlflow.pytorch.save_model(net, str(path), pip_requirements=["torch"], serialization_format="pickle",
                              signature=infer_signature(features, output))
    models["pytorch"] = mlflow.pyfunc.load_model(str(path))
    labels = (features[:, 0] > 0).astype(int)
    path = tmp_path_factory.mktemp("sklearn") / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(features.astype(np.float64), labels), str(path),
                              pip_requirements=["scikit-learn"],
                              signature=ModelSignature(Schema([TensorSpec(np.dtype("float64"), (-1, 4))]),
                                                       Schema([ColSpec(DataType.long)])))
    models["sklearn"] = mlflow.pyfunc.load_model(str(path))
    path = tmp_path_factory.mktemp("objects") / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(features.astype(np.float64), labels), str(path),
                              pip_requirements=["scikit-learn"],
                              signature=ModelSignature(Schema([TensorSpec(np.dtype("O"), (-1,))])))
    models["objects"] = mlflow.pyfunc.load_model(str(path))
    return models


@pytest.mark.parametrize("name", ["pytorch", "sklearn"])
def test_answers_are_mlflows_byte_for_byte(tensor_models, name):
    model = tensor_models[name]
    scorer = DirectScorer.for_model(model)
    assert scorer is not None
    for request in ({"inputs": [[0.1, -2, 3.25, 1e30]]}, {"inputs": [[1, 2, 3, 4], [0.0, -0.0, 7, 5e-324]]},
                    {"inputs": [["1.5", True, 3, 4]]}, {"inputs": [[1, 2, 3, 4]], "params": {"unknown": 1}}):
        body = json.dumps(request).encode()
        direct = scorer.answer_body(body)
        assert direct is not None, request
        assert (200, direct) == _mlflow_answer(model, body)
    for declined in ({"inputs": [[1, 2, 3]]}, {"instances": [[1, 2, 3, 4]]}, {"inputs": []},
                     {"dataframe_split": {"data": [[1, 2, 3, 4]]}}, {"inputs": [[1, 2, 3, 4]], "extra": 1}):
        body = json.dumps(declined).encode()
        assert scorer.answer_body(body) is None, declined


@pytest.mark.parametrize("name", ["pytorch", "sklearn"])
def test_random_requests_get_mlflows_answer_or_go_to_mlflow(tensor_models, name):
    model = tensor_models[name]
    scorer = DirectScorer.for_model(model)
    answered = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.one_of(_regular((-1, 4)), st.integers(0, 3).flatmap(_nested)))
    def check(inputs):
        body = json.dumps({"inputs": inputs}).encode()
        direct = scorer.answer_body(body)
        if direct is not None:
            answered.append(body)
            assert (200, direct) == _mlflow_answer(model, body)

    check()
    assert len(answered) >= 10, f"the direct path answered only {len(answered)} of 60"


def test_object_tensors_go_through_mlflow(tensor_models):
    assert DirectScorer.for_model(tensor_models["objects"]) is None
