"""Agents written for Databricks that call an LLM served by another endpoint (logged from code, chosen by the
model_config's `kind`): a ResponsesAgent and a ChatAgent that send the conversation to the external-model
endpoint named by model_config's `endpoint` through the unmodified databricks-sdk (`WorkspaceClient()`: on
Databricks, and on Podium, the replica's DATABRICKS_HOST and client credential, DATABRICKS_CLIENT_ID /
DATABRICKS_CLIENT_SECRET, given to a model logged with that endpoint as a resource) and answer its reply; their streams yield the reply word by word."""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import ChatAgent, ResponsesAgent
from mlflow.types.agent import ChatAgentChunk, ChatAgentMessage, ChatAgentResponse
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

CONFIG = mlflow.models.ModelConfig(development_config={"kind": "responses", "endpoint": "ext-llm"})


def _ask(messages: list[dict]) -> str:
    from databricks.sdk import WorkspaceClient

    reply = WorkspaceClient().api_client.do("POST", f"/serving-endpoints/{CONFIG.get('endpoint')}/invocations",
                                            body={"messages": messages})
    return reply["choices"][0]["message"]["content"]


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or () if isinstance(part, dict))


class LlmResponsesAgent(ResponsesAgent):
    def _reply(self, request) -> str:
        items = [i.model_dump() if hasattr(i, "model_dump") else i for i in request.input]
        return _ask([{"role": i["role"], "content": _text(i.get("content"))} for i in items if i.get("role")])

    def predict(self, request):
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=self._reply(request), id="msg_1")])

    def predict_stream(self, request):
        text = self._reply(request)
        for piece in _pieces(text):
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=piece, item_id="msg_1"))
        yield ResponsesAgentStreamEvent(type="response.output_item.done",
                                        item=self.create_text_output_item(text=text, id="msg_1"))


class LlmChatAgent(ChatAgent):
    def predict(self, messages, context=None, custom_inputs=None):
        text = _ask([{"role": m.role, "content": m.content or ""} for m in messages])
        return ChatAgentResponse(messages=[ChatAgentMessage(role="assistant", content=text, id="msg_1")])

    def predict_stream(self, messages, context=None, custom_inputs=None):
        for piece in _pieces(_ask([{"role": m.role, "content": m.content or ""} for m in messages])):
            yield ChatAgentChunk(delta=ChatAgentMessage(role="assistant", content=piece, id="msg_1"))


mlflow.models.set_model({"responses": LlmResponsesAgent, "chat_agent": LlmChatAgent}[CONFIG.get("kind")]())
