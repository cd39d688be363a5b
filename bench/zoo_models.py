"""The model zoo of `bench.zoo`: eight tiny models, trained in-process and registered in an MLflow registry.

No network and no model hub: the Hugging Face model is built from a tiny config with random weights and a
tokenizer from a local vocab file. Each model is registered as `bench.zoo.<name>` version 1, with
pip_requirements given (no slow requirement inference). Each entry comes with the one-row request body the
bench sends to both mlflow models serve and Podium:

| model              | flavor              | request body (one row)                                              |
|--------------------|---------------------|---------------------------------------------------------------------|
| numeric_sklearn    | sklearn             | dataframe_split, 4 double columns                                   |
| mixed_pipeline     | sklearn             | dataframe_split, int64 + double + string + bool columns             |
| tree_pipeline      | sklearn             | dataframe_split, same columns as mixed_pipeline                     |
| xgboost            | xgboost             | dataframe_split, int64 + double columns                             |
| lightgbm           | lightgbm            | dataframe_split, int64 + double columns                             |
| pytorch_mlp        | pytorch             | {"inputs": [[4 floats]]} (tensor signature: float32, shape (-1, 4)) |
| hf_text_classifier | transformers        | {"inputs": ["some text"]} (text-classification pipeline)            |
| custom_pyfunc      | pyfunc PythonModel  | dataframe_split, double + double + string columns                   |
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PREFIX = "bench.zoo"


@dataclass(frozen=True)
class ZooModel:
    name: str
    flavor: str
    registered_name: str
    version: str
    body: bytes          # the one-row request, the same bytes to every system

    @property
    def uri(self) -> str:
        return f"models:/{self.registered_name}/{self.version}"


def _split(frame) -> bytes:
    """A one-row dataframe_split body from the first row of `frame` (plain JSON types, in column order)."""
    row = [frame[column].iloc[0] for column in frame.columns]   # column by column: an int stays an int
    row = [value.item() if hasattr(value, "item") else value for value in row]
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": [row]}}).encode()


def _requirements(*packages: str) -> list[str]:
    """Pinned requirements for the installed distributions (xgboost may be installed as xgboost-cpu)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", *packages):
        for distribution in (package, f"{package}-cpu"):
            try:
                pins.append(f"{distribution}=={version(distribution)}")
                break
            except PackageNotFoundError:
                continue
        else:
            pins.append(package)
    return pins


def _mixed_frame(rows: int = 400):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows).astype("int64"),
        "income": rng.normal(50_000, 15_000, rows).round(2),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], rows),
        "member": rng.random(rows) < 0.4,
    })
    target = ((frame.age > 40) ^ frame.member | (frame.city == "nice")).astype("int64")
    return frame, target


def _int_float_frame(rows: int = 400):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"count": rng.integers(0, 100, rows).astype("int64"),
                          "x1": rng.normal(size=rows), "x2": rng.normal(size=rows), "x3": rng.normal(size=rows)})
    target = ((frame["count"] > 50) & (frame.x1 + frame.x2 > 0) | (frame.x3 > 1)).astype("int64")
    return frame, target


def numeric_sklearn(registered_name: str) -> bytes:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    labels = rng.integers(0, 3, 150)
    frame = pd.DataFrame(centers[labels] + rng.normal(scale=0.3, size=(150, 4)).round(1),
                         columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    mlflow.sklearn.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                             registered_model_name=registered_name,
                             pip_requirements=_requirements("scikit-learn"))
    return _split(frame)


def _pipeline(final_step, dense: bool):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)
    columns = ColumnTransformer([("numeric", StandardScaler(), ["age", "income"]),
                                 ("categorical", encode, ["city", "member"])])
    return Pipeline([("columns", columns), ("model", final_step)])


def mixed_pipeline(registered_name: str) -> bytes:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame, target = _mixed_frame()
    model = _pipeline(LogisticRegression(max_iter=500), dense=False).fit(frame, target)
    mlflow.sklearn.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                             registered_model_name=registered_name,
                             pip_requirements=_requirements("scikit-learn", "pandas"))
    return _split(frame)


def tree_pipeline(registered_name: str) -> bytes:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    frame, target = _mixed_frame()
    model = _pipeline(RandomForestClassifier(n_estimators=10, max_depth=6, n_jobs=1, random_state=0), dense=True)
    model.fit(frame, target)
    # MLflow saves scikit-learn models with skops, which loads tree node storage only when trusted (it
    # records the list in the MLmodel file, so every loader trusts the same types).
    mlflow.sklearn.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                             registered_model_name=registered_name, skops_trusted_types=["sklearn.tree._tree.Tree"],
                             pip_requirements=_requirements("scikit-learn", "pandas"))
    return _split(frame)


def xgboost(registered_name: str) -> bytes:
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature

    frame, target = _int_float_frame()
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, random_state=0).fit(frame, target)
    mlflow.xgboost.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                             registered_model_name=registered_name, pip_requirements=_requirements("xgboost"))
    return _split(frame)


def lightgbm(registered_name: str) -> bytes:
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    frame, target = _int_float_frame()
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, n_jobs=1, random_state=0, verbose=-1)
    model.fit(frame, target)
    mlflow.lightgbm.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                              registered_model_name=registered_name, pip_requirements=_requirements("lightgbm"))
    return _split(frame)


def pytorch_mlp(registered_name: str) -> bytes:
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    features = np.random.default_rng(3).normal(size=(32, 4)).round(3).astype(np.float32)
    with torch.no_grad():
        output = model(torch.from_numpy(features)).numpy()
    # A tensor signature (float32, shape (-1, 4)): mlflow models serve takes {"inputs": [[...]]} for it.
    # MLflow 3 saves a traced graph (pt2) by default, which needs an input example to trace with; a
    # one-row example would fix the batch dimension at 1 (torch.export specializes sizes 0 and 1).
    mlflow.pytorch.log_model(model, name="model", signature=infer_signature(features, output),
                             input_example=features[:3],
                             registered_model_name=registered_name, pip_requirements=_requirements("torch"))
    return json.dumps({"inputs": [[round(float(v), 3) for v in features[0].tolist()]]}).encode()


_WORDS = ("the a an is was good bad great terrible movie film plot actor acting love hate boring fun "
          "story ending music slow fast really not very some text this that it and of to").split()


def hf_text_classifier(registered_name: str, work_dir: Path) -> bytes:
    import mlflow
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, pipeline

    vocab = work_dir / "hf-vocab.txt"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = BertForSequenceClassification(config).eval()
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    example = ["this movie was really good fun"]
    output = mlflow.transformers.generate_signature_output(classifier, example)
    signature = mlflow.models.infer_signature(example, output)
    mlflow.transformers.log_model(classifier, name="model", task="text-classification", signature=signature,
                                  registered_model_name=registered_name,
                                  pip_requirements=_requirements("transformers", "torch"))
    return json.dumps({"inputs": ["some text about a good movie"]}).encode()


def custom_pyfunc(registered_name: str) -> bytes:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    # Defined here (not at module level) so that cloudpickle stores the class by value: the model loads
    # wherever mlflow does, without this module on the path ("code inline").
    class RowWiseScore(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            def score(row):
                return round(row["x"] * row["weight"] + 0.5 * len(row["tag"]), 4)
            out = model_input.apply(score, axis=1)
            return pd.DataFrame({"score": out.astype("float64"),
                                 "tag_upper": model_input["tag"].str.upper()})

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.normal(size=8).round(3), "weight": rng.random(8).round(3),
                          "tag": rng.choice(["red", "green", "blue"], 8)})
    model = RowWiseScore()
    mlflow.pyfunc.log_model(name="model", python_model=model,
                            signature=infer_signature(frame, model.predict(None, frame)),
                            registered_model_name=registered_name, pip_requirements=_requirements("pandas"))
    return _split(frame)


BUILDERS: dict[str, tuple[str, Callable]] = {
    "numeric_sklearn": ("sklearn", numeric_sklearn),
    "mixed_pipeline": ("sklearn", mixed_pipeline),
    "tree_pipeline": ("sklearn", tree_pipeline),
    "xgboost": ("xgboost", xgboost),
    "lightgbm": ("lightgbm", lightgbm),
    "pytorch_mlp": ("pytorch", pytorch_mlp),
    "hf_text_classifier": ("transformers", hf_text_classifier),
    "custom_pyfunc": ("pyfunc", custom_pyfunc),
}


def build(name: str, tracking_uri: str, work_dir: Path, registry_uri: str | None = None) -> ZooModel:
    """Trains `name`, logs it in a run of its own and registers it as bench.zoo.<name> (version 1)."""
    import mlflow

    # No model hub: the Hugging Face model is built locally and must not be looked up.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    flavor, builder = BUILDERS[name]
    registered_name = f"{PREFIX}.{name}"
    with mlflow.start_run(run_name=f"zoo-{name}"):
        body = builder(registered_name, work_dir) if name == "hf_text_classifier" else builder(registered_name)
    version = max(int(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{registered_name}'"))
    return ZooModel(name, flavor, registered_name, str(version), body)
