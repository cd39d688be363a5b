"""Open Inference Protocol tensors: the raw codec (every datatype) and the fit to MLflow signatures. No stack."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

from services.common.errors import InvalidParameter
from services.common.tensors import (
    RawTensor, array_from_raw, check_header, datatype_of, raw_from_array, raw_from_values, values_from_raw,
)
from services.worker.signature import input_metadata, model_input, output_metadata, output_tensors


@pytest.mark.parametrize("datatype, values, numpy_dtype", [
    ("BOOL", [True, False, True, True], np.bool_),
    ("INT8", [-128, 0, 5, 127], np.int8),
    ("INT16", [-32768, 1, 2, 32767], np.int16),
    ("INT32", [-(2**31), 1, 2, 2**31 - 1], np.int32),
    ("INT64", [-(2**63), 1, 2, 2**63 - 1], np.int64),
    ("UINT8", [0, 1, 2, 255], np.uint8),
    ("UINT16", [0, 1, 2, 65535], np.uint16),
    ("UINT32", [0, 1, 2, 2**32 - 1], np.uint32),
    ("UINT64", [0, 1, 2, 2**64 - 1], np.uint64),
    ("FP16", [0.5, -1.0, 2.0, 65504.0], np.float16),
    ("FP32", [0.25, -1.5, 3.0, 1e30], np.float32),
    ("FP64", [0.1, -1e300, 3.0, 2.5], np.float64),
])
def test_every_numeric_datatype_round_trips(datatype, values, numpy_dtype):
    nested = [values[:2], values[2:]]   # JSON data may be nested row-major
    tensor = raw_from_values("x", datatype, (2, 2), nested)
    assert tensor.raw == np.array(values, dtype=numpy_dtype).astype(np.dtype(numpy_dtype).newbyteorder("<")).tobytes()
    array = array_from_raw(tensor)
    assert array.shape == (2, 2) and array.dtype == numpy_dtype
    assert values_from_raw(tensor) == np.array(values, dtype=numpy_dtype).tolist()
    assert datatype_of(array.dtype) == datatype
    assert raw_from_array("x", array) == tensor


def test_bytes_are_length_prefixed():
    tensor = raw_from_values("s", "BYTES", (3,), ["a", "héllo", ""])
    assert tensor.raw == struct.pack("<I", 1) + b"a" + struct.pack("<I", 6) + "héllo".encode() + struct.pack("<I", 0)
    assert list(array_from_raw(tensor)) == [b"a", "héllo".encode(), b""]
    assert values_from_raw(tensor) == ["a", "héllo", ""]
    assert raw_from_array("s", np.array(["a", "héllo", ""], dtype=object)) == tensor


@pytest.mark.parametrize("call, needle", [
    (lambda: raw_from_values("a", "FP32", (2, 2), [1.0, 2.0, 3.0]), "3 values do not fill shape [2, 2]"),
    (lambda: raw_from_values("b", "UINT8", (1,), [300]), "out of range"),
    (lambda: raw_from_values("c", "INT32", (1,), [1.5]), "not a INT32"),
    (lambda: raw_from_values("d", "BOOL", (1,), [1]), "not a BOOL"),
    (lambda: raw_from_values("e", "INT64", (1,), [True]), "not a INT64"),
    (lambda: raw_from_values("f", "BYTES", (1,), [3]), "must be strings"),
    (lambda: array_from_raw(RawTensor("g", "FP32", (2,), b"\0" * 7)), "7 bytes do not hold shape [2]"),
    (lambda: array_from_raw(RawTensor("h", "BYTES", (1,), b"\x09\0\0\0ab")), "longer than the data"),
    (lambda: check_header("i", "FLOAT", [1]), "unknown datatype"),
    (lambda: check_header("j", "FP32", [-1]), "non-negative"),
])
def test_bad_tensors_name_the_tensor(call, needle):
    with pytest.raises(InvalidParameter) as error:
        call()
    assert needle in error.value.message
    assert f"'{error.value.message.split(chr(39))[1]}'" in error.value.message   # the tensor's name is quoted


COLUMNS = Schema([ColSpec(DataType.double, "x"), ColSpec(DataType.long, "n"), ColSpec(DataType.string, "s"),
                  ColSpec(DataType.boolean, "b", required=False)])
TENSORS = Schema([TensorSpec(np.dtype("float32"), (-1, 3), "features"), TensorSpec(np.dtype("int64"), (-1,), "ids")])


def test_signature_metadata():
    assert [(t.name, t.datatype, t.shape) for t in input_metadata(COLUMNS)] == [
        ("x", "FP64", (-1,)), ("n", "INT64", (-1,)), ("s", "BYTES", (-1,)), ("b", "BOOL", (-1,))]
    assert [(t.name, t.datatype, t.shape) for t in input_metadata(TENSORS)] == [
        ("features", "FP32", (-1, 3)), ("ids", "INT64", (-1,))]
    assert [(t.name, t.datatype) for t in output_metadata(Schema([ColSpec(DataType.long)]))] == [("predictions", "INT64")]
    assert input_metadata(Schema([TensorSpec(np.dtype("float32"), (-1, 4))]))[0].name == "input-0"


def test_column_signature_builds_a_dataframe_casting_safely():
    frame = model_input(COLUMNS, [
        raw_from_values("x", "FP32", (2,), [1.5, 2.5]),         # FP32 → FP64 is a safe cast
        raw_from_values("n", "INT32", (2, 1), [[1], [2]]),      # a column may come as [N, 1]
        raw_from_values("s", "BYTES", (2,), ["a", "b"]),
    ])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["x", "n", "s"]
    assert frame.x.dtype == np.float64 and frame.n.dtype == np.int64
    assert frame.x.tolist() == [1.5, 2.5] and frame.n.tolist() == [1, 2] and frame.s.tolist() == ["a", "b"]


def test_tensor_signature_builds_a_dict_of_arrays():
    arrays = model_input(TENSORS, [raw_from_values("features", "FP32", (2, 3), [0.0] * 6),
                                   raw_from_values("ids", "INT64", (2,), [7, 8])])
    assert arrays["features"].shape == (2, 3) and arrays["features"].dtype == np.float32
    assert arrays["ids"].tolist() == [7, 8]


@pytest.mark.parametrize("schema, tensors, needle", [
    (COLUMNS, [raw_from_values("x", "BYTES", (1,), ["1"])], "input 'x': datatype BYTES does not fit the model's FP64"),
    (COLUMNS, [raw_from_values("n", "FP64", (1,), [1.0])], "input 'n': datatype FP64 does not fit the model's INT64"),
    (COLUMNS, [raw_from_values("x", "FP64", (1, 2), [1.0, 2.0])], "input 'x': shape [1, 2] does not fit"),
    (COLUMNS, [raw_from_values("zz", "FP64", (1,), [1.0])], "input 'zz' is not an input of this model"),
    (COLUMNS, [raw_from_values("x", "FP64", (1,), [1.0]), raw_from_values("s", "BYTES", (1,), ["a"])],
     "input 'n' is missing"),
    (COLUMNS, [raw_from_values("x", "FP64", (2,), [1.0, 2.0]), raw_from_values("n", "INT64", (1,), [1]),
               raw_from_values("s", "BYTES", (1,), ["a"])], "input 'n' has 1 rows"),
    (TENSORS, [raw_from_values("features", "FP32", (2, 4), [0.0] * 8), raw_from_values("ids", "INT64", (2,), [1, 2])],
     "input 'features': shape [2, 4] does not fit the model's [-1, 3]"),
    (TENSORS, [raw_from_values("features", "FP64", (1, 3), [0.0] * 3), raw_from_values("ids", "INT64", (1,), [1])],
     "input 'features': datatype FP64 does not fit the model's FP32"),
])
def test_tensors_that_do_not_fit_are_named(schema, tensors, needle):
    with pytest.raises(InvalidParameter) as error:
        model_input(schema, tensors)
    assert needle in error.value.message


@pytest.mark.parametrize("prediction, want", [
    (np.array([1, 2]), [("predictions", "INT64", (2,), [1, 2])]),
    (pd.DataFrame({"label": ["a", "b"], "score": [0.5, 0.25]}),
     [("label", "BYTES", (2,), ["a", "b"]), ("score", "FP64", (2,), [0.5, 0.25])]),
    (["x", "yz"], [("predictions", "BYTES", (2,), ["x", "yz"])]),
    ({"a": [1.0, 2.0], "b": np.array([[1], [2]], dtype=np.int32)},
     [("a", "FP64", (2,), [1.0, 2.0]), ("b", "INT32", (2, 1), [1, 2])]),
    (pd.Series([True, False], name="flag"), [("flag", "BOOL", (2,), [True, False])]),
    ([{"k": 1}, {"k": 2}], [("predictions", "BYTES", (2,), ['{"k": 1}', '{"k": 2}'])]),
    (3.5, [("predictions", "FP64", (1,), [3.5])]),
])
def test_every_kind_of_output_becomes_tensors(prediction, want):
    got = [(t.name, t.datatype, t.shape, values_from_raw(t)) for t in output_tensors(prediction, None)]
    assert got == want


def test_requested_outputs_are_filtered_and_checked():
    frame = pd.DataFrame({"label": ["a"], "score": [0.5]})
    assert [t.name for t in output_tensors(frame, None, ["score"])] == ["score"]
    with pytest.raises(InvalidParameter, match="output 'nope' is not an output"):
        output_tensors(frame, None, ["nope"])
