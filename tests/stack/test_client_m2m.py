"""The client libraries agents written for Databricks use, signed in with a replica's OAuth client credential
alone: the unmodified `databricks_openai.DatabricksOpenAI` and `databricks_langchain.ChatDatabricks` (in a
user's environment of their own, tests/support/client_venv.py), with only DATABRICKS_HOST,
DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET in the environment (no token, no ~/.databrickscfg), as an
agent's replica has them. The databricks-sdk underneath signs in with oauth-m2m at the router's
/oidc/v1/token; the credential queries the endpoint its model declared, plain and streaming, and is refused
(403) on one it did not declare.

The credential is the one a replica of `m2m-agent` is given (its model declares `m2m-llm` as a resource), read
from the replica's environment through tests/support/agent_caller_model.py, as test_scoped_credentials.py does."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.support.external import create_external_endpoint, external_entity
from tests.support.models import use_registry

pytestmark = pytest.mark.stack

MODEL_FILE = Path(__file__).parents[1] / "support" / "agent_caller_model.py"
LLM = "m2m-llm"            # declared by the agent's model: its credential may query it
OTHER = "m2m-other"        # not declared: the credential may not
AGENT = "m2m-agent"
MODEL = "main.default.m2m_caller"

PRELUDE = """
import json, os
def show(**values):
    print(json.dumps(values, default=str), flush=True)
"""


@pytest.fixture(scope="module")
def credential(stack, fake_providers) -> dict[str, str]:
    """The OAuth client credential a replica of AGENT holds: DATABRICKS_HOST, _CLIENT_ID, _CLIENT_SECRET."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.models.resources import DatabricksServingEndpoint

    for name in (LLM, OTHER):
        create_external_endpoint(stack, name, external_entity(fake_providers, "openai", "llm/v1/chat"))
    use_registry(stack.info)
    frame = pd.DataFrame({"endpoint": [LLM]})
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_FILE), pip_requirements=["mlflow"],
                                         resources=[DatabricksServingEndpoint(endpoint_name=LLM)],
                                         signature=infer_signature(frame, ["x"]), registered_model_name=MODEL)
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": AGENT, "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": str(logged.registered_model_version),
         "workload_size": "Small", "scale_to_zero_enabled": False}]}})
    assert created.status_code == 200, created.text
    assert stack.wait_endpoint(AGENT, timeout_s=300)["state"]["ready"] == "READY"
    reply = stack.api("POST", f"/serving-endpoints/{AGENT}/invocations",
                      json={"dataframe_split": {"columns": ["endpoint"], "data": [["credential"]]}})
    assert reply.status_code == 200, reply.text
    found = json.loads(reply.json()["predictions"][0])
    assert set(found) == {"DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}, sorted(found)
    assert found["DATABRICKS_HOST"] == stack.url
    yield found
    for name in (AGENT, LLM, OTHER):
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


@pytest.fixture(scope="module")
def run_m2m(credential, tmp_path_factory):
    """Runs a script with the client venv's python and the replica's three variables as its only DATABRICKS_*
    ones (client_venv.run_client drops the rest), HOME an empty folder: no ~/.databrickscfg to fall back on."""
    from tests.support import client_venv

    client_venv.client_python()   # built once (minutes the first time)
    home = tmp_path_factory.mktemp("m2m-home")

    def run(script: str) -> list[dict]:
        return client_venv.run_client(PRELUDE + script, env={**credential, "HOME": str(home)}, timeout_s=180)
    return run


def test_databricks_openai_with_the_replica_credential(run_m2m, fake_providers):
    signed_in, plain, streamed, refused = run_m2m(f"""
from databricks.sdk import WorkspaceClient
from databricks_openai import DatabricksOpenAI
from openai import PermissionDeniedError
client = DatabricksOpenAI(max_retries=0)   # WorkspaceClient() underneath: the environment alone
workspace = client._workspace_client
show(auth_type=workspace.config.auth_type, base_url=str(client.base_url),
     variables=sorted(k for k in os.environ if k.startswith("DATABRICKS_")))
reply = client.chat.completions.create(model={LLM!r}, messages=[{{"role": "user", "content": "hello m2m"}}])
show(text=reply.choices[0].message.content, finish=reply.choices[0].finish_reason)
chunks = list(client.chat.completions.create(model={LLM!r}, stream=True,
                                             messages=[{{"role": "user", "content": "streamed m2m"}}]))
show(text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
     finish=[c.choices[0].finish_reason for c in chunks if c.choices][-1])
try:
    client.chat.completions.create(model={OTHER!r}, messages=[{{"role": "user", "content": "not mine"}}])
    show(refused=None)
except PermissionDeniedError as exc:
    show(refused=exc.status_code, body=exc.body)
""")
    assert signed_in["auth_type"] == "oauth-m2m"
    assert signed_in["base_url"].endswith("/serving-endpoints/")
    assert signed_in["variables"] == ["DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_HOST"]
    assert plain == {"text": "echo: hello m2m", "finish": "stop"}
    assert streamed == {"text": "echo: streamed m2m", "finish": "stop"}
    assert refused["refused"] == 403, refused
    assert refused["body"]["error_code"] == "PERMISSION_DENIED", refused
    # The undeclared endpoint's provider was never called.
    assert not [r for r in fake_providers.requests if "not mine" in json.dumps(r["body"])]


def test_chat_databricks_with_the_replica_credential(run_m2m):
    answer, streamed = run_m2m(f"""
from databricks_langchain import ChatDatabricks
llm = ChatDatabricks(endpoint={LLM!r}, max_retries=0)   # no workspace_client: the environment alone
answer = llm.invoke("hello langchain")
show(text=answer.text, type=answer.type)
chunks = list(llm.stream("streamed langchain"))
show(text="".join(c.text for c in chunks), chunks=len([c for c in chunks if c.text]))
""")
    assert answer == {"text": "echo: hello langchain", "type": "ai"}
    assert streamed["text"] == "echo: streamed langchain" and streamed["chunks"] == 3, streamed
