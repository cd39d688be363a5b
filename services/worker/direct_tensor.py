"""The array MLflow's scoring server hands a model whose signature is one unnamed numeric tensor (a PyTorch or
Keras model logged from a numpy example), built straight from a decoded `{"inputs": [...]}` request, or None
where MLflow would do anything else with it.

MLflow parses such `inputs` with `np.array(inputs, dtype=spec.type)` (`convert_data_type`), then
`_enforce_tensor_spec` checks the array's rank and fixed dimensions against the spec (its dtype is the spec's
by construction) and hands the array itself to the model. This makes the same call and the same check; a
list of records (dicts), an empty list, a value numpy refuses, a ragged list or a shape the spec refuses
return None, and MLflow's own path converts, refuses or explains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tensor:
    dtype: np.dtype           # the spec's numpy dtype: bool, integer or floating point only
    shape: tuple[int, ...]    # -1 where any size goes


def takes(dtype: np.dtype) -> bool:
    """Whether the direct path builds tensors of this dtype (object and string tensors go through MLflow)."""
    return np.dtype(dtype).kind in "biuf"


def build_tensor(tensor: Tensor, data: Any) -> np.ndarray | None:
    """The array MLflow's parse and schema enforcement make of `{"inputs": data}`, or None (pure)."""
    # MLflow reads a list whose items are all dicts (an empty one included) as records of named columns.
    if not isinstance(data, list) or not data or any(isinstance(item, dict) for item in data):
        return None
    try:
        array = np.array(data, dtype=tensor.dtype)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.ndim != len(tensor.shape) or any(expected not in (-1, actual)
                                               for expected, actual in zip(tensor.shape, array.shape)):
        return None
    return array
