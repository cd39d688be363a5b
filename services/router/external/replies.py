"""What a provider call hands back to the AI gateway core, in the OpenAI shape already. Plain records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def of(cls, usage: object) -> "Usage":
        """From an OpenAI `usage` object; missing or malformed counts are 0."""
        if not isinstance(usage, dict):
            return cls()
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return cls(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


@dataclass(frozen=True)
class ProviderReply:
    body: bytes          # an OpenAI-shape JSON object
    usage: Usage


@dataclass
class StreamOutcome:
    """Filled in while a stream is relayed: known completely only once it ends."""

    usage: Usage = field(default_factory=Usage)
    status_code: int = 200          # a provider failure mid-stream turns it into the mapped status
    error: str = ""


@dataclass(frozen=True)
class ProviderStream:
    chunks: AsyncIterator[bytes]    # `data: ...` events, `data: [DONE]` last
    outcome: StreamOutcome
