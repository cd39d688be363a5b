"""A pyfunc agent (logged from code) written for Databricks: it queries other serving endpoints with the
host and credential a model logged with them as resources is given (DATABRICKS_HOST, and on Podium an OAuth
client credential, DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET), through the unmodified databricks-sdk, and
answers, for each row's `endpoint`, a JSON object: {"status": 200, "text": the first choice's content} or
{"error_code": what the call was refused with}. A row `GET <path>` calls that API path instead (to show what
else the credential may not do), a row `host` answers {"host": DATABRICKS_HOST, "auth_type": the SDK's}, and
a row `credential` the DATABRICKS_* credential variables (so the test can try the credential itself: this
model exists only to be tested)."""

from __future__ import annotations

import json
import os

import mlflow


class EndpointCallerModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.errors import DatabricksError

        client = WorkspaceClient()   # DATABRICKS_HOST and the credential in the environment, as on Databricks
        answers = []
        for endpoint in model_input["endpoint"]:
            if endpoint in ("host", "credential"):
                answers.append(json.dumps({"host": client.config.host, "auth_type": client.config.auth_type}
                                          if endpoint == "host" else
                                          {k: v for k, v in os.environ.items() if k.startswith("DATABRICKS_")}))
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
