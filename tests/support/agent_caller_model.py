"""A pyfunc agent (logged from code) written for Databricks: it queries other serving endpoints with the
host and credential Databricks gives a model logged with them as resources (DATABRICKS_HOST,
DATABRICKS_TOKEN), through the unmodified databricks-sdk, and answers, for each row's `endpoint`, a JSON
object: {"status": 200, "text": the first choice's content} or {"error_code": what the call was refused with}.
A row `GET <path>` calls that API path instead (to show what else the credential may not do), a row
`host` answers {"host": DATABRICKS_HOST}, and a row `token` {"token": DATABRICKS_TOKEN} (so the test can
try the credential itself: this model exists only to be tested)."""

from __future__ import annotations

import json
import os

import mlflow


class EndpointCallerModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.errors import DatabricksError

        client = WorkspaceClient()   # DATABRICKS_HOST and DATABRICKS_TOKEN, as on Databricks
        answers = []
        for endpoint in model_input["endpoint"]:
            if endpoint in ("host", "token"):
                answers.append(json.dumps({"host": client.config.host} if endpoint == "host"
                                          else {"token": os.environ["DATABRICKS_TOKEN"]}))
                continue
            try:
                if endpoint.startswith("GET "):
                    client.api_client.do("GET", endpoint[4:])
                    answers.append(json.dumps({"status": 200}))
                    continue
                reply = client.api_client.do("POST", f"/serving-endpoints/{endpoint}/invocations",
                                             body={"messages": [{"role": "user", "content": "hello agent"}]})
                answers.append(json.dumps({"status": 200, "text": reply["choices"][0]["message"]["content"]}))
            except DatabricksError as exc:
                answers.append(json.dumps({"error_code": exc.error_code, "message": str(exc)[:200]}))
        return answers


mlflow.models.set_model(EndpointCallerModel())
