"""An endpoint's guardrails as routers enforce them (control plane → router, inside the GatewayPolicy JSON).

Plain records. `ai_gateway.guardrails.input` / `.output` become one GuardrailSide each. `safety` and
`valid_topics` are judged by the endpoint named in `guard_endpoint` (a Podium extension); the control plane
refuses them without one, so what a router receives is exactly what it enforces.
"""

from __future__ import annotations

from dataclasses import dataclass

PII_NONE, PII_BLOCK, PII_MASK = "NONE", "BLOCK", "MASK"


@dataclass(frozen=True)
class GuardrailSide:
    """The checks on one direction of traffic (the request, or the answer)."""

    pii: str = PII_NONE                       # NONE | BLOCK | MASK
    invalid_keywords: tuple[str, ...] = ()    # matched whole-word, case-insensitively
    safety: bool = False                      # judged by the guard endpoint
    valid_topics: tuple[str, ...] = ()        # judged by the guard endpoint

    @property
    def is_judged(self) -> bool:
        return self.safety or bool(self.valid_topics)

    @property
    def is_active(self) -> bool:
        return self.pii != PII_NONE or bool(self.invalid_keywords) or self.is_judged


@dataclass(frozen=True)
class Guardrails:
    input: GuardrailSide = GuardrailSide()
    output: GuardrailSide = GuardrailSide()
    guard_endpoint: str = ""                  # the endpoint that judges safety and valid_topics

    @property
    def is_active(self) -> bool:
        return self.input.is_active or self.output.is_active


def guardrails_from_raw(raw: object) -> Guardrails | None:
    """From the dict `dataclasses.asdict` made of a Guardrails (None stays None)."""
    if not isinstance(raw, dict):
        return None
    sides = [GuardrailSide(side.get("pii", PII_NONE), tuple(side.get("invalid_keywords", ())),
                           bool(side.get("safety", False)), tuple(side.get("valid_topics", ())))
             for side in (raw.get("input") or {}, raw.get("output") or {})]
    return Guardrails(*sides, guard_endpoint=raw.get("guard_endpoint", ""))
