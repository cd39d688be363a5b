"""Adaptive batching, the pure part: which requests merge, the merged request, the split answer, the plan."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

from services.common.tensors import RawTensor, raw_from_array
from services.worker.batch_merge import (
    is_batch_due, json_part, merge_json, merge_tensors, plan_batch, split_rows, split_tensors, tensor_part,
)

JSON = "application/json"


def _part(body: dict, content_type: str = JSON, **kwargs):
    return json_part(json.dumps(body).encode(), content_type, **kwargs)


def _split(rows, columns=("a", "b"), **extra):
    return {"dataframe_split": {"columns": list(columns), "data": rows, **extra}}


@pytest.mark.parametrize("first, second, merges", [
    pytest.param(_split([[1.0, 2.0]]), _split([[3.0, 4.0], [5.0, 6.0]]), True, id="split: same columns and kinds"),
    pytest.param(_split([[1.0, 2.0]]), _split([[1.0, 2.0]], ("b", "a")), False, id="split: columns reordered"),
    pytest.param(_split([[1.0, 2.0]]), _split([[1, 2.0]]), False, id="split: int where the other has float"),
    pytest.param(_split([[1.0, None]]), _split([[1.0, 2.0]]), False, id="split: a null in one"),
    pytest.param(_split([[1.0, 2.0]], index=[0]), _split([[1.0, 2.0]]), False, id="split: index in one only"),
    pytest.param({"dataframe_records": [{"a": 1.0, "b": "x"}]}, {"dataframe_records": [{"a": 2.0, "b": "yy"}]},
                 True, id="records: same keys and kinds"),
    pytest.param({"dataframe_records": [{"a": 1.0, "b": "x"}]}, {"dataframe_records": [{"b": "x", "a": 1.0}]},
                 False, id="records: key order differs"),
    pytest.param({"dataframe_records": [{"a": 1.0}]}, _split([[1.0]], ("a",)), False, id="different formats"),
    pytest.param({"instances": [[1.0, 2.0]]}, {"instances": [[3.0, 4.0]]}, True, id="instances: same shape"),
    pytest.param({"instances": [[1.0, 2.0]]}, {"instances": [[3.0, 4.0, 5.0]]}, False, id="instances: ragged"),
    pytest.param({"inputs": {"a": [1.0], "b": [2]}}, {"inputs": {"a": [3.0, 4.0], "b": [5, 6]}}, True,
                 id="inputs: columns"),
    pytest.param({"inputs": {"a": [1.0]}}, {"inputs": [[1.0]]}, False, id="inputs: columns vs rows"),
    pytest.param({**_split([[1.0, 2.0]]), "params": {"k": 1}}, {**_split([[1.0, 2.0]]), "params": {"k": 1}}, True,
                 id="equal params"),
    pytest.param({**_split([[1.0, 2.0]]), "params": {"k": 1}}, {**_split([[1.0, 2.0]]), "params": {"k": 2}}, False,
                 id="different params"),
    pytest.param({**_split([[1.0, 2.0]]), "params": {}}, _split([[1.0, 2.0]]), False, id="params vs none"),
])
def test_which_json_requests_merge(first, second, merges):
    a, b = _part(first), _part(second)
    assert a is not None and b is not None
    assert (a.key == b.key) is merges


@pytest.mark.parametrize("body, content_type", [
    pytest.param(b"a,b\n1,2\n", "text/csv", id="csv"),
    pytest.param(json.dumps(_split([[1.0, 2.0]])).encode(), "application/json; format=pandas-split",
                 id="unknown content type parameter"),
    pytest.param(b"{not json", JSON, id="not JSON"),
    pytest.param(b"[1, 2]", JSON, id="a list"),
    pytest.param(json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), JSON, id="LLM chat body"),
    pytest.param(json.dumps({**_split([[1.0]], ("a",)), "instances": [[1.0]]}).encode(), JSON, id="two formats"),
    pytest.param(json.dumps({**_split([[1.0]], ("a",)), "extra": 1}).encode(), JSON, id="an unknown key"),
    pytest.param(json.dumps({"inputs": {"prompt": "hello"}}).encode(), JSON, id="scalar input"),
    pytest.param(json.dumps({"inputs": {"a": [1.0], "b": [1.0, 2.0]}}).encode(), JSON, id="unequal columns"),
    pytest.param(json.dumps(_split([])).encode(), JSON, id="no rows"),
    pytest.param(json.dumps(_split([[2 ** 70, 1.0]])).encode(), JSON, id="beyond int64"),
    pytest.param(json.dumps({"dataframe_records": [{"a": 1.0}, {"b": 1.0}]}).encode(), JSON,
                 id="records with different keys"),
    pytest.param(json.dumps({**_split([[1.0]], ("a",)), "params": [1]}).encode(), JSON, id="params not an object"),
    pytest.param(b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON, id="nested too deep to parse"),
    pytest.param(b'{"inputs": [' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"]}", JSON,
                 id="nested too deep to walk"),
])
def test_requests_scored_alone(body, content_type):
    assert json_part(body, content_type) is None


def test_nested_columns_keep_only_dataframe_formats_mergeable():
    assert _part({"inputs": {"a": [[1.0, 2.0]]}}, has_nested_columns=True) is None
    assert _part({"instances": [{"a": [1.0, 2.0]}]}, has_nested_columns=True) is None
    assert _part({"dataframe_records": [{"a": [1.0, 2.0]}]}, has_nested_columns=True) is not None


def test_json_content_type_with_utf8_charset_merges_with_plain_json():
    body = json.dumps(_split([[1.0, 2.0]])).encode()
    assert json_part(body, "application/json; charset=utf-8").key == json_part(body, JSON).key


@pytest.mark.parametrize("bodies, merged", [
    pytest.param([_split([[1.0, 2.0]]), _split([[3.0, 4.0], [5.0, 6.0]])],
                 _split([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), id="dataframe_split"),
    pytest.param([_split([[1.0, 2.0]], index=[7]), _split([[3.0, 4.0]], index=[7])],
                 _split([[1.0, 2.0], [3.0, 4.0]], index=[7, 7]), id="dataframe_split with index"),
    pytest.param([{"dataframe_records": [{"a": 1}]}, {"dataframe_records": [{"a": 2}, {"a": 3}]}],
                 {"dataframe_records": [{"a": 1}, {"a": 2}, {"a": 3}]}, id="dataframe_records"),
    pytest.param([{"instances": [[1, 2]]}, {"instances": [[3, 4]]}], {"instances": [[1, 2], [3, 4]]}, id="instances"),
    pytest.param([{"inputs": {"a": [1], "b": ["x"]}, "params": {"p": 1}},
                  {"inputs": {"a": [2, 3], "b": ["y", "z"]}, "params": {"p": 1}}],
                 {"inputs": {"a": [1, 2, 3], "b": ["x", "y", "z"]}, "params": {"p": 1}}, id="inputs with params"),
])
def test_merge_json(bodies, merged):
    parts = [_part(b) for b in bodies]
    assert len({p.key for p in parts}) == 1
    assert merge_json(parts) == merged


def test_rows_per_part():
    assert _part(_split([[1.0, 2.0]] * 3)).rows == 3
    assert _part({"inputs": {"a": [1, 2], "b": [3, 4]}}).rows == 2
    assert _part({"instances": [{"a": 1}] * 4}).rows == 4


@pytest.mark.parametrize("prediction", [
    np.arange(6), np.arange(12).reshape(6, 2), list("abcdef"), pd.Series(range(6), name="y"),
    pd.DataFrame({"y": range(6), "z": list("abcdef")}),
], ids=["1-d array", "2-d array", "list", "series", "frame"])
def test_split_rows_matches_scoring_each_part_alone(prediction):
    from mlflow.pyfunc.scoring_server import predictions_to_json

    pieces = split_rows(prediction, [1, 3, 2])
    assert [len(p) for p in pieces] == [1, 3, 2]
    # The answer each part gets renders as the same rows would alone.
    for piece, rows in zip(pieces, (slice(0, 1), slice(1, 4), slice(4, 6))):
        expected = prediction.iloc[rows].reset_index(drop=True) if hasattr(prediction, "iloc") else prediction[rows]
        assert _json(predictions_to_json, piece) == _json(predictions_to_json, expected)


def _json(render, value) -> str:
    import io

    buffer = io.StringIO()
    render(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("prediction", [np.float64(1.0), 3, "x", {"y": [1, 2, 3]}, np.arange(5), [1, 2],
                                        np.array(7.0)],
                         ids=["numpy scalar", "int", "str", "dict", "too few rows", "list too short", "0-d array"])
def test_split_rows_refuses_what_is_not_one_row_per_input(prediction):
    assert split_rows(prediction, [3, 3]) is None


def _tensor(name, array):
    return raw_from_array(name, np.asarray(array))


def test_tensor_parts_merge_and_split_along_dimension_zero():
    first = [_tensor("x", np.array([[1.0, 2.0]])), _tensor("s", np.array([b"ab"], dtype=object))]
    second = [_tensor("x", np.array([[3.0, 4.0], [5.0, 6.0]])), _tensor("s", np.array([b"c", b""], dtype=object))]
    a, b = tensor_part(first, ["y"], {}), tensor_part(second, ["y"], {})
    assert a.key == b.key and (a.rows, b.rows) == (1, 2)
    merged = merge_tensors([a, b])
    assert [t.shape for t in merged] == [(3, 2), (3,)]
    assert np.frombuffer(merged[0].raw, "<f8").tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # An output per row (a BYTES one too) splits back into the parts' own rows.
    outputs = [_tensor("y", np.array([[10], [20], [30]], dtype="<i8")),
               _tensor("t", np.array(["a", "bb", "ccc"], dtype=object))]
    pieces = split_tensors(outputs, [1, 2])
    assert pieces[0] == [_tensor("y", np.array([[10]], dtype="<i8")), _tensor("t", np.array(["a"], dtype=object))]
    assert pieces[1] == [_tensor("y", np.array([[20], [30]], dtype="<i8")),
                         _tensor("t", np.array(["bb", "ccc"], dtype=object))]


@pytest.mark.parametrize("other, merges", [
    pytest.param([_tensor("x", np.zeros((4, 2)))], True, id="more rows"),
    pytest.param([_tensor("x", np.zeros((1, 3)))], False, id="other inner shape"),
    pytest.param([_tensor("x", np.zeros((1, 2), dtype="<f4"))], False, id="other datatype"),
    pytest.param([_tensor("z", np.zeros((1, 2)))], False, id="other name"),
])
def test_which_tensor_requests_merge(other, merges):
    a = tensor_part([_tensor("x", np.zeros((1, 2)))], [], {})
    assert (a.key == tensor_part(other, [], {}).key) is merges


def test_tensor_requests_with_other_outputs_or_params_do_not_merge():
    inputs = [_tensor("x", np.zeros((1, 2)))]
    keys = {tensor_part(inputs, [], {}).key, tensor_part(inputs, ["y"], {}).key,
            tensor_part(inputs, [], {"k": 1}).key}
    assert len(keys) == 3


@pytest.mark.parametrize("inputs", [
    pytest.param([RawTensor("x", "FP64", (2,), b"\0" * 8)], id="bytes do not fill the shape"),
    pytest.param([RawTensor("s", "BYTES", (1,), struct.pack("<I", 9) + b"ab")], id="truncated BYTES element"),
    pytest.param([_tensor("x", np.zeros(2)), _tensor("y", np.zeros(3))], id="inputs of different rows"),
    pytest.param([RawTensor("x", "FP64", (), b"\0" * 8)], id="a scalar"),
    pytest.param([RawTensor("x", "FP64", (0,), b"")], id="no rows"),
])
def test_malformed_tensor_requests_are_scored_alone(inputs):
    assert tensor_part(inputs, [], {}) is None


def test_split_tensors_refuses_outputs_without_one_row_per_input():
    assert split_tensors([_tensor("y", np.arange(4))], [2, 3]) is None
    assert split_tensors([_tensor("y", np.array(1.0))], [1, 1]) is None


@pytest.mark.parametrize("rows, age_s, due", [
    pytest.param(1, 0.0, False, id="fresh and small: wait"),
    pytest.param(1, 0.002, True, id="waited long enough"),
    pytest.param(8, 0.0, True, id="full"),
    pytest.param(20, 0.0, True, id="over full"),
])
def test_is_batch_due(rows, age_s, due):
    assert is_batch_due(rows, age_s, max_rows=8, max_wait_s=0.002) is due


@pytest.mark.parametrize("parts, chosen", [
    pytest.param([("a", 1)] * 10, list(range(8)), id="up to max rows"),
    pytest.param([("a", 1), ("b", 1), ("a", 1)], [0, 2], id="only the oldest's key"),
    pytest.param([("b", 1), ("a", 1), ("a", 1)], [0], id="oldest alone when none shares its key"),
    pytest.param([("a", 5), ("a", 5), ("a", 3)], [0, 2], id="skips a part that would overflow"),
    pytest.param([("a", 20), ("a", 1)], [0], id="a part larger than the max goes alone"),
])
def test_plan_batch(parts, chosen):
    assert plan_batch(parts, max_rows=8) == chosen


# ---- the served entity's settings in the control plane ----

def _entity(**fields):
    from services.control_plane import spec

    return spec.validate_served_entity({"entity_name": "c.s.m", "entity_version": "1", **fields}, "e")


def test_batching_settings_are_stored_only_when_given():
    assert "max_batch_size" not in _entity() and "max_batch_wait_ms" not in _entity()
    assert "max_batch_wait_ms" not in _entity(max_batch_size=32)   # never waits unless asked to
    assert (_entity(max_batch_size=8, max_batch_wait_ms=0)["max_batch_wait_ms"],
            _entity(max_batch_size=8, max_batch_wait_ms=7.5)["max_batch_wait_ms"]) == (0, 7.5)
    assert _entity(max_batch_size=1) == {**_entity(), "max_batch_size": 1}   # off, as asked


@pytest.mark.parametrize("fields, needle", [
    pytest.param({"max_batch_size": 0}, "e.max_batch_size", id="zero"),
    pytest.param({"max_batch_size": 2.5}, "e.max_batch_size", id="not an integer"),
    pytest.param({"max_batch_size": True}, "e.max_batch_size", id="a boolean"),
    pytest.param({"max_batch_size": "8"}, "e.max_batch_size", id="a string"),
    pytest.param({"max_batch_size": 100_000}, "e.max_batch_size", id="too large"),
    pytest.param({"max_batch_size": 8, "max_batch_wait_ms": -1}, "e.max_batch_wait_ms", id="negative wait"),
    pytest.param({"max_batch_size": 8, "max_batch_wait_ms": "2"}, "e.max_batch_wait_ms", id="wait as a string"),
    pytest.param({"max_batch_size": 8, "max_batch_wait_ms": 60_000}, "e.max_batch_wait_ms", id="wait too long"),
])
def test_bad_batching_settings_name_the_field(fields, needle):
    from services.common.errors import InvalidParameter

    with pytest.raises(InvalidParameter) as raised:
        _entity(**fields)
    assert raised.value.message.startswith(needle)


def test_changing_batching_settings_changes_the_deployment_but_absent_ones_keep_old_keys():
    from services.control_plane.state import deployment_key

    plain = _entity()
    keys = {deployment_key("e", e) for e in (plain, _entity(max_batch_size=8), _entity(max_batch_size=16),
                                             _entity(max_batch_size=16, max_batch_wait_ms=5))}
    assert len(keys) == 4
    # The key of an entity stored before batching existed is what it always was (no restart on upgrade).
    import hashlib

    old = {f: plain.get(f) for f in ("entity_name", "entity_version", "environment_vars", "workload_type")}
    assert deployment_key("e", plain) == hashlib.sha256(json.dumps(["e", old], sort_keys=True).encode()).hexdigest()[:20]


def test_worker_settings_from_the_deployment():
    from services.scaler.runtime import WorkerSpec

    assert WorkerSpec("k", "models:/m/1", {}).worker_settings() == {}
    assert WorkerSpec("k", "models:/m/1", {}, max_batch_size=32, max_batch_wait_ms=2).worker_settings() == {
        "PODIUM_WORKER_MAX_BATCH_SIZE": "32", "PODIUM_WORKER_MAX_BATCH_WAIT_MS": "2.0"}


def test_get_shows_the_settings_and_they_are_the_only_podium_fields_in_the_entity():
    from databricks.sdk.service.serving import ServingEndpointDetailed

    from services.control_plane import spec, views
    from tests.support.shapes import sdk_fields

    config = spec.validate_config({"served_entities": [
        {"entity_name": "c.s.m", "entity_version": "1", "max_batch_size": 16, "max_batch_wait_ms": 3}]})
    entity = {**config["served_entities"][0], "creator": "ana", "creation_timestamp": 1}
    endpoint = {"id": "abc", "name": "b", "creator": "ana", "creation_timestamp": 1, "last_updated_timestamp": 1,
                "config": {**config, "served_entities": [entity], "config_version": 1}, "failure": "",
                "state": {"ready": "READY", "config_update": "NOT_UPDATING"}, "tags": [{"key": "k"}]}
    rendered = views.detailed(endpoint, {}, "CAN_MANAGE")
    shown = rendered["config"]["served_entities"][0]
    assert (shown["max_batch_size"], shown["max_batch_wait_ms"]) == (16, 3)
    assert rendered["config"]["served_models"][0]["max_batch_size"] == 16
    assert ServingEndpointDetailed.from_dict(rendered).as_dict() == sdk_fields(rendered)


def test_container_and_pod_replicas_get_the_batching_settings_too():
    from services.scaler.replica_specs import worker_environment
    from services.scaler.runtime import WorkerSpec

    spec = WorkerSpec("k", "models:/m/1", {"A": "1"}, max_batch_size=8, max_batch_wait_ms=1.5)
    env = worker_environment(spec.worker_settings(), spec.environment_vars, spec.model_uri, 8500, 0)
    assert (env["A"], env["PODIUM_WORKER_MAX_BATCH_SIZE"], env["PODIUM_WORKER_MAX_BATCH_WAIT_MS"]) == ("1", "8", "1.5")
