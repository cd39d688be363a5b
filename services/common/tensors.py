"""Open Inference Protocol v2 tensors: datatypes and the raw byte form, to and from JSON and numpy. Pure.

Every hop carries a tensor as `RawTensor`: row-major little-endian bytes, BYTES elements each a 4-byte
little-endian length then the bytes. That is the protocol's own binary form (REST binary extension,
gRPC raw contents), so binary requests cross router and worker without being re-encoded; JSON `data`
and gRPC typed contents are converted to it once, at the router's edge.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.common.errors import InvalidParameter

# OIP datatype → numpy dtype (little-endian). BYTES holds Python bytes objects.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES = tuple(NUMPY_DTYPES)
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in NUMPY_DTYPES.items() if name != "BYTES"}


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]   # -1 = any size


@dataclass(frozen=True)
class ModelMetadata:
    """What a served model takes and returns (from its MLflow signature)."""

    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    task: str = ""              # the task MLflow logged a generative model with (agent/v1/responses, ...)
    is_streaming: bool = False  # the model has predict_stream


@dataclass(frozen=True)
class RawTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes


def check_header(name: str, datatype: object, shape: object, what: str = "input") -> tuple[str, tuple[int, ...]]:
    """The datatype and shape of a tensor header, or InvalidParameter naming the tensor."""
    if datatype not in NUMPY_DTYPES:
        raise InvalidParameter(f"{what} '{name}': unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}")
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidParameter(f"{what} '{name}': shape must be a list of non-negative integers, not {shape!r}")
    return datatype, tuple(shape)


def datatype_of(dtype: np.dtype) -> str:
    """The OIP datatype of a numpy dtype; strings, bytes and objects are BYTES."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "BOOL"
    return _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize), "BYTES")


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def array_from_raw(tensor: RawTensor, what: str = "input") -> np.ndarray:
    """The tensor as a numpy array of its shape (BYTES: an object array of bytes)."""
    count = element_count(tensor.shape)
    if tensor.datatype == "BYTES":
        items = _split_bytes(tensor.raw, tensor.name, what)
        if len(items) != count:
            raise InvalidParameter(f"{what} '{tensor.name}': {len(items)} BYTES elements do not fill shape "
                                   f"{list(tensor.shape)} ({count} elements)")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(tensor.shape)
    dtype = NUMPY_DTYPES[tensor.datatype]
    if len(tensor.raw) != count * dtype.itemsize:
        raise InvalidParameter(f"{what} '{tensor.name}': {len(tensor.raw)} bytes do not hold shape "
                               f"{list(tensor.shape)} of {tensor.datatype} ({count * dtype.itemsize} bytes)")
    return np.frombuffer(tensor.raw, dtype=dtype).reshape(tensor.shape)


def raw_from_array(name: str, array: np.ndarray) -> RawTensor:
    """A numpy array as a tensor; non-numeric elements become BYTES (str as UTF-8)."""
    array = np.asarray(array)
    datatype = datatype_of(array.dtype)
    if datatype == "BYTES":
        return RawTensor(name, "BYTES", array.shape, _join_bytes(array.reshape(-1)))
    return RawTensor(name, datatype, array.shape, np.ascontiguousarray(array, NUMPY_DTYPES[datatype]).tobytes())


def raw_from_values(name: str, datatype: str, shape: tuple[int, ...], values: Sequence, what: str = "input") -> RawTensor:
    """A tensor from JSON `data` or gRPC typed contents: flat or nested in row-major order."""
    flat = _flatten(values)
    count = element_count(shape)
    if len(flat) != count:
        raise InvalidParameter(f"{what} '{name}': {len(flat)} values do not fill shape {list(shape)} ({count} elements)")
    if datatype == "BYTES":
        items = []
        for value in flat:
            if isinstance(value, str):
                items.append(value.encode())
            elif isinstance(value, bytes):
                items.append(value)
            else:
                raise InvalidParameter(f"{what} '{name}': BYTES data must be strings, not {type(value).__name__}")
        return RawTensor(name, datatype, shape, _join_bytes(items))
    dtype = NUMPY_DTYPES[datatype]
    for value in flat:
        if not _fits(value, datatype):
            raise InvalidParameter(f"{what} '{name}': {value!r} is not a {datatype} value")
    try:
        array = np.array(flat, dtype=dtype)
    except (OverflowError, ValueError, TypeError):
        raise InvalidParameter(f"{what} '{name}': values out of range for {datatype}") from None
    return RawTensor(name, datatype, shape, array.tobytes())


def values_from_raw(tensor: RawTensor) -> list:
    """The tensor's elements as a flat JSON-ready list (BYTES: UTF-8 strings where they decode)."""
    array = array_from_raw(tensor, "output").reshape(-1)
    if tensor.datatype == "BYTES":
        return [_text(item) for item in array]
    return array.tolist()


def _fits(value: object, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int)
    return isinstance(value, (int, float))


def _flatten(values) -> list:
    if not isinstance(values, (list, tuple)):
        return [values]
    if not any(isinstance(v, (list, tuple)) for v in values):
        return list(values)
    flat: list = []
    for value in values:
        flat.extend(_flatten(value))
    return flat


def _join_bytes(items) -> bytes:
    parts = []
    for item in items:
        if isinstance(item, bytes):
            data = item
        elif isinstance(item, str):
            data = item.encode()
        else:
            data = str(item).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _split_bytes(raw: bytes, name: str, what: str) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidParameter(f"{what} '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidParameter(f"{what} '{name}': BYTES element longer than the data")
        items.append(raw[offset:offset + length])
        offset += length
    return items


def _text(item: bytes) -> str:
    try:
        return item.decode()
    except UnicodeDecodeError:
        return item.decode(errors="backslashreplace")  # JSON has no bytes: binary output keeps them exact
