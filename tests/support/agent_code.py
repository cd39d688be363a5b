"""MLflow generative models logged from code (mlflow "models from code"), chosen by the logged model_config's
`kind`: a ResponsesAgent, a ChatAgent, a ChatModel and a plain pyfunc with predict_stream. They answer
deterministically (no LLM): the reply echoes the last user message, streamed word by word.

A request whose custom_inputs (or, for the plain pyfunc, its `gate` field) names a `gate` path makes the stream
wait after its first event until that file exists: the no-buffering test creates it only once it has received
the first event, so a buffering path would deadlock until the gate's deadline. The plain pyfunc raises after
its first event for the prompt FAIL_MIDSTREAM.
"""

from __future__ import annotations

import os
import time
import uuid

import mlflow
from mlflow.pyfunc import ChatAgent, ChatModel, PythonModel, ResponsesAgent
from mlflow.types.agent import ChatAgentChunk, ChatAgentMessage, ChatAgentResponse
from mlflow.types.llm import (
    ChatChoice, ChatChoiceDelta, ChatChunkChoice, ChatCompletionChunk, ChatCompletionResponse, ChatMessage,
    TokenUsageStats,
)
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

GATE_WAIT_S = 30.0
FAIL_MIDSTREAM = "fail after the first word"   # the plain pyfunc's prompt that makes it raise mid-stream


def _words(text: str) -> list[str]:
    words = f"echo: {text}".split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _wait_for_gate(gate: str | None) -> None:
    if not gate:
        return
    deadline = time.monotonic() + GATE_WAIT_S
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or () if isinstance(part, dict))


class EchoResponsesAgent(ResponsesAgent):
    def _last_user_text(self, request) -> str:
        for item in reversed(request.input):
            item = item.model_dump() if hasattr(item, "model_dump") else item
            if item.get("role") == "user":
                return _text(item.get("content"))
        return ""

    def predict(self, request):
        text = "".join(_words(self._last_user_text(request)))
        item = self.create_text_output_item(text=text, id="msg_1")
        return ResponsesAgentResponse(output=[item], custom_outputs=request.custom_inputs)

    def predict_stream(self, request):
        gate = (request.custom_inputs or {}).get("gate")
        words = _words(self._last_user_text(request))
        for i, word in enumerate(words):
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=word, item_id="msg_1"))
            if i == 0:
                _wait_for_gate(gate)
        yield ResponsesAgentStreamEvent(type="response.output_item.done",
                                        item=self.create_text_output_item(text="".join(words), id="msg_1"))


class EchoChatAgent(ChatAgent):
    def predict(self, messages, context=None, custom_inputs=None):
        text = "".join(_words(messages[-1].content or ""))
        return ChatAgentResponse(messages=[ChatAgentMessage(role="assistant", content=text, id="msg_1")],
                                 custom_outputs=custom_inputs)

    def predict_stream(self, messages, context=None, custom_inputs=None):
        gate = (custom_inputs or {}).get("gate")
        for i, word in enumerate(_words(messages[-1].content or "")):
            yield ChatAgentChunk(delta=ChatAgentMessage(role="assistant", content=word, id="msg_1"))
            if i == 0:
                _wait_for_gate(gate)


class EchoChatModel(ChatModel):
    def predict(self, context, messages, params):
        words = _words(messages[-1].content or "")
        return ChatCompletionResponse(   # usage: the words in and out, as an LLM's tokens
            id="chatcmpl-echo", model="echo", created=1700000000,
            choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content="".join(words)),
                                finish_reason="stop")],
            usage=TokenUsageStats(prompt_tokens=len((messages[-1].content or "").split()),
                                  completion_tokens=len(words)))

    def predict_stream(self, context, messages, params):
        gate = (params.custom_inputs or {}).get("gate") if params.custom_inputs else None
        words = _words(messages[-1].content or "")
        for i, word in enumerate(words):
            yield ChatCompletionChunk(
                id="chatcmpl-echo", model="echo", created=1700000000,
                choices=[ChatChunkChoice(index=0, delta=ChatChoiceDelta(role="assistant", content=word),
                                         finish_reason="stop" if i == len(words) - 1 else None)])
            if i == 0:
                _wait_for_gate(gate)


class EchoStreamingModel(PythonModel):
    """Any pyfunc with predict_stream: a dict in, one dict per word out."""

    def predict(self, context, model_input, params=None):
        return {"text": "".join(_words(_prompt(model_input)))}

    def predict_stream(self, context, model_input, params=None):
        gate = model_input.get("gate") if isinstance(model_input, dict) else None
        for i, word in enumerate(_words(_prompt(model_input))):
            yield {"delta": word, "index": i, "id": str(uuid.UUID(int=i))}
            if i == 0:
                _wait_for_gate(gate)
                if _prompt(model_input) == FAIL_MIDSTREAM:
                    raise RuntimeError("the model failed after its first event")


def _prompt(model_input) -> str:
    if isinstance(model_input, dict):
        return str(model_input.get("prompt", ""))
    return str(model_input["prompt"].iloc[0])   # a DataFrame: MLflow's parse of {"inputs": {...}}


KINDS = {"responses": EchoResponsesAgent, "chat_agent": EchoChatAgent, "chat_model": EchoChatModel,
         "streaming": EchoStreamingModel}

mlflow.models.set_model(KINDS[mlflow.models.ModelConfig(development_config={"kind": "responses"}).get("kind")]())
