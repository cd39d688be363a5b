"""MLflow generative models (tests/support/agent_code.py) logged from code and registered in a stack's registry,
and what MLflow itself answers for them: its scoring server's answer, and the model's own stream, in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.support.models import use_registry

AGENT_CODE = Path(__file__).with_name("agent_code.py")
KINDS = ("responses", "chat_agent", "chat_model", "streaming")


@dataclass(frozen=True)
class RegisteredAgent:
    kind: str
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def log_agent(kind: str, name: str = "model", registered_model_name: str | None = None):
    """Logs the `kind` model from code in the active MLflow run; returns MLflow's ModelInfo."""
    import mlflow

    return mlflow.pyfunc.log_model(name=name, python_model=str(AGENT_CODE), model_config={"kind": kind},
                                   registered_model_name=registered_model_name, pip_requirements=["mlflow"])


def register_agent(info: dict, kind: str, name: str) -> RegisteredAgent:
    import mlflow

    use_registry(info)
    with mlflow.start_run():
        logged = log_agent(kind, registered_model_name=name)
    return RegisteredAgent(kind, name, str(logged.registered_model_version))


def scoring_server_answer(pyfunc, payload: dict):
    """What MLflow's scoring server (`mlflow models serve`) answers to `payload`: (status, body text)."""
    from mlflow.pyfunc import scoring_server

    result = scoring_server.invocations(json.dumps(payload), "application/json", pyfunc,
                                        pyfunc.metadata.get_input_schema())
    return result.status, result.response


def in_process_stream(pyfunc, payload: dict) -> list:
    """The events the model yields for `payload` (its `stream` flag left out), as JSON values."""
    from mlflow.pyfunc import scoring_server

    request = {k: v for k, v in payload.items() if k != "stream"}
    parsed = scoring_server._parse_json_data(request, pyfunc.metadata, pyfunc.metadata.get_input_schema())
    return [json.loads(json.dumps(event, cls=_encoder())) for event in pyfunc.predict_stream(parsed.data, parsed.params)]


def _encoder():
    from mlflow.utils.proto_json_utils import NumpyEncoder

    return NumpyEncoder
