"""Tiny real models of every common MLflow flavor, trained or built in the test and registered under
catalog.schema.model names. Each comes back with the in-process model to compare served answers with.

pip_requirements are given explicitly: MLflow's inference of them starts a process per model (slow on a
2-core machine), and mlflow.pytorch/transformers would pin torchvision, which is not installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.support.models import use_registry

FEATURES = ["f0", "f1", "f2", "f3"]
CUSTOM_MODEL_FILE = Path(__file__).with_name("custom_model.py")
CUSTOM_WEIGHTS = {"scale": 2.0, "offset": 0.5, "prefix": "item-"}


@dataclass
class Flavored:
    name: str
    version: str
    model: Any              # the in-process model (the flavor's own object)
    sample: Any             # rows to query with

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _version(info) -> str:
    return str(info.registered_model_version)


def _torch_requirement() -> str:
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def register_xgboost(info: dict, name: str) -> Flavored:
    import mlflow
    import xgboost
    from mlflow.models import infer_signature

    use_registry(info)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(60, 4)), columns=FEATURES)
    target = frame.f0 * 2 - frame.f2 + rng.normal(scale=0.1, size=60)
    model = xgboost.XGBRegressor(n_estimators=8, max_depth=3, n_jobs=1).fit(frame, target)
    with mlflow.start_run():
        logged = mlflow.xgboost.log_model(
            model, name="model", signature=infer_signature(frame, model.predict(frame)),
            registered_model_name=name, pip_requirements=[f"xgboost=={xgboost.__version__}"])
    return Flavored(name, _version(logged), model, frame.head(5).reset_index(drop=True))


def register_pytorch(info: dict, name: str) -> Flavored:
    """A small nn.Module (4 → 8 → 3) trained a few steps; a tensor-based signature (float32 [-1, 4])."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    use_registry(info)
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    features = rng.normal(size=(64, 4)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(np.int64) + (features[:, 1] > 0.5).astype(np.int64)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(features)), torch.from_numpy(labels))
        loss.backward()
        optimizer.step()
    net.eval()
    sample = features[:5]
    with torch.no_grad():
        output = net(torch.from_numpy(sample)).numpy()
    with mlflow.start_run():
        # MLflow's default format (pt2, torch.export) traces forward on the input example; the batch
        # dimension stays dynamic.
        logged = mlflow.pytorch.log_model(net, name="model", signature=infer_signature(sample, output),
                                          input_example=sample, registered_model_name=name,
                                          pip_requirements=[_torch_requirement(), "cloudpickle"])
    return Flavored(name, _version(logged), net, sample)


def register_transformers(info: dict, name: str, workdir: Path) -> Flavored:
    """A text-classification pipeline around a tiny BERT built from a config and a local vocabulary."""
    import mlflow
    import transformers

    use_registry(info)
    pipe = text_classifier(workdir)
    with mlflow.start_run():
        logged = mlflow.transformers.log_model(
            pipe, name="model", registered_model_name=name,
            pip_requirements=[f"transformers=={transformers.__version__}", _torch_requirement()])
    return Flavored(name, _version(logged), pipe, ["good movie", "the movie is awful", "great"])


def text_classifier(workdir: Path):
    """A transformers text-classification pipeline around a tiny BERT (no model hub)."""
    import torch
    import transformers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "great", "awful", "the", "is"]
    vocab = workdir / "vocab.txt"
    vocab.write_text("\n".join(words))
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2, id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    model = transformers.BertForSequenceClassification(config).eval()
    return transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)


def register_custom_pyfunc(info: dict, name: str, workdir: Path) -> Flavored:
    """A PythonModel logged from code with an artifact (its weights) and params (`kind`, `scale`)."""
    import mlflow
    from mlflow.models import infer_signature

    use_registry(info)
    weights = workdir / "weights.json"
    weights.write_text(json.dumps(CUSTOM_WEIGHTS))
    frame = pd.DataFrame({"text": ["a", "bb", "ccc"], "x": [1.0, 2.5, -3.0]})
    signature = infer_signature(frame, params={"kind": "array", "scale": 1.0})
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(
            name="model", python_model=str(CUSTOM_MODEL_FILE), artifacts={"weights": str(weights)},
            signature=signature, registered_model_name=name, pip_requirements=["pandas"])
    return Flavored(name, _version(logged), None, frame)
