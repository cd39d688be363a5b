"""Transformers text classifiers batch by default: a text-classification pipeline without a batch size runs
each text of a merged call by itself, so concurrent requests get byte for byte what they get alone, on random
texts of every length (padding them into one batch changes some scores); a pipeline that may pad texts into one batch does not
batch by default, and neither do other pipelines."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.worker.model_threads import call_threads
from services.worker.row_exact import DEFAULT_BATCH_ROWS, batch_policy
from tests.support.flavors import text_classifier
from tests.unit.test_row_exact import scored_together_and_alone

WORDS = ["good", "bad", "movie", "great", "awful", "the", "is", "unknown", "GOOD", "é", "a,b", "  "]


def _save(path, pipeline, **kwargs):
    import mlflow
    from mlflow.models import infer_signature

    example = ["the movie is good"]
    signature = infer_signature(example, mlflow.transformers.generate_signature_output(pipeline, example),
                                params=kwargs.pop("params", None))
    mlflow.transformers.save_model(pipeline, str(path), signature=signature, pip_requirements=["transformers"],
                                   **kwargs)
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """Wide enough that padding texts into one batch changes some scores' last digits (a quarter of random
    texts at this width; none at tests.support.flavors' width), so the check below could see it."""
    import torch
    import transformers

    workdir = tmp_path_factory.mktemp("text")
    tokenizer = text_classifier(workdir).tokenizer
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=256, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=512, max_position_embeddings=64,
                                     num_labels=2, id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    model = transformers.BertForSequenceClassification(config).eval()
    return _save(workdir / "model", transformers.pipeline("text-classification", model=model, tokenizer=tokenizer))


def test_a_text_classifier_batches_by_default_one_text_at_a_time(classifier):
    policy = batch_policy(classifier)
    assert policy.rows == DEFAULT_BATCH_ROWS and policy.guard is None, policy.reason
    assert policy.row_at_a_time and not policy.wide_calls
    assert call_threads({}, "cpu", policy.wide_calls) == 1   # one text's tensors: torch on one thread


@pytest.mark.parametrize("how", ["pipeline", "model_config", "params"])
def test_a_classifier_that_may_pad_texts_together_does_not(tmp_path, how):
    pipeline = text_classifier(tmp_path)
    kwargs = {"model_config": {"batch_size": 4}} if how == "model_config" else \
        {"params": {"batch_size": 1}} if how == "params" else {}
    model = _save(tmp_path / "model", pipeline, **kwargs)
    if how == "pipeline":   # (MLflow does not save a pipeline's own batch size: set on the loaded one)
        model._model_impl.pipeline._batch_size = 4
    policy = batch_policy(model)
    assert policy.rows == 1 and "batch_size" in policy.reason
    assert call_threads({}, "cpu", policy.wide_calls) == 1


def test_other_pipelines_do_not_batch_by_default(tmp_path):
    import mlflow
    import transformers

    classifier = text_classifier(tmp_path)
    extractor = transformers.pipeline("feature-extraction", model=classifier.model, tokenizer=classifier.tokenizer)
    mlflow.transformers.save_model(extractor, str(tmp_path / "model"), pip_requirements=["transformers"])
    policy = batch_policy(mlflow.pyfunc.load_model(str(tmp_path / "model")))
    assert policy.rows == 1 and "FeatureExtractionPipeline" in policy.reason


def test_batched_texts_get_what_they_get_alone(classifier):
    merged = []
    text = st.lists(st.sampled_from(WORDS), min_size=0, max_size=20).map(" ".join)

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests=st.lists(st.lists(text, min_size=1, max_size=3), min_size=6, max_size=30))
    def check(requests):
        bodies = [json.dumps({"inputs": texts}).encode() for texts in requests]
        together, expected, stats = scored_together_and_alone(classifier, bodies)
        merged.append(stats)
        assert together == expected
        assert all(result.http_status == 200 for result in expected)

    check()
    assert max(rows for rows, _ in merged) > 3 and all(fallbacks == 0 for _, fallbacks in merged)
