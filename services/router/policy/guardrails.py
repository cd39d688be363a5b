"""What an endpoint's guardrails decide about a text: pass it, pass it masked, or block it. Pure.

A request or an answer is checked as the texts it carries (`text_slots`): a chat's message contents, a
completion's prompt, an embedding's inputs, the choices of an answer; for a custom model, every string of
its JSON. A side blocks on an invalid keyword (whole word, any case) or, with `pii` BLOCK, on personal data
(services/router/policy/pii.py); with `pii` MASK the data is replaced by its kind, e.g. `[CREDIT_CARD]`.

A streamed answer is checked as it flows (`release_stream_text`): text is held back until nothing that
could still turn out to be personal data or a keyword can start inside what is released, so what the caller
got before a block passed the check, and a masked value is never half sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.guardrail_rules import PII_BLOCK, PII_MASK, GuardrailSide
from services.router.policy.pii import find_pii, mask_pii

# Held back from a stream: longer than any personal value that may contain spaces (an IBAN written in groups
# is at most 42 characters); one without spaces (an e-mail address) is held whole, back to the last space.
STREAM_HOLD_CHARS = 64
# A stream that sends no space for this long is released anyway: a hold must not grow without bound.
MAX_STREAM_HOLD_CHARS = 4096

Slot = tuple[object, object]   # (a dict or list, the key or index of one text in it)


@dataclass(frozen=True)
class Verdict:
    texts: list[str]           # the texts to send on (masked where the side masks)
    blocked: str = ""          # why the texts are refused; "" = they pass


def text_slots(task: str, document: object, *, is_answer: bool) -> list[Slot]:
    """Where the texts to check are in a request (or answer) of `task` ("" = a custom model's JSON)."""
    slots: list[Slot] = []
    if not isinstance(document, dict):
        return _every_string(document, slots) if not task else slots
    if not task:
        return _every_string(document, slots)
    if is_answer:
        for choice in document.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                _add_content(message, slots)
            if isinstance(choice.get("text"), str):
                slots.append((choice, "text"))
        return slots
    if task == "llm/v1/chat":
        for message in document.get("messages") or ():
            if isinstance(message, dict):
                _add_content(message, slots)
        return slots
    field = "prompt" if task == "llm/v1/completions" else "input"
    value = document.get(field)
    if isinstance(value, str):
        slots.append((document, field))
    elif isinstance(value, list):
        slots.extend((value, i) for i, item in enumerate(value) if isinstance(item, str))
    return slots


def _add_content(message: dict, slots: list[Slot]) -> None:
    content = message.get("content")
    if isinstance(content, str):
        slots.append((message, "content"))
    elif isinstance(content, list):   # content parts: only the text parts carry text
        slots.extend((part, "text") for part in content
                     if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))


def _every_string(value: object, slots: list[Slot]) -> list[Slot]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(item, str):
            slots.append((value, key))
        elif isinstance(item, (dict, list)):
            _every_string(item, slots)
    return slots


def read_slot(slot: Slot) -> str:
    container, key = slot
    return container[key]  # type: ignore[index]


def write_slot(slot: Slot, text: str) -> None:
    container, key = slot
    container[key] = text  # type: ignore[index]


def check_texts(texts: list[str], side: GuardrailSide) -> Verdict:
    """Whether the texts pass `side`, and the texts to send on."""
    for text in texts:
        keyword = find_invalid_keyword(text, side.invalid_keywords)
        if keyword is not None:
            return Verdict(texts, f"it contains the invalid keyword '{keyword}'")
    if side.pii == PII_BLOCK:
        kinds = sorted({span.kind for text in texts for span in find_pii(text)})
        if kinds:
            return Verdict(texts, f"it contains personal data ({', '.join(kinds)})")
    if side.pii == PII_MASK:
        return Verdict([mask_pii(text) for text in texts])
    return Verdict(texts)


def find_invalid_keyword(text: str, keywords: tuple[str, ...], *, is_final: bool = True) -> str | None:
    """The first keyword found as a whole word (any case); unless `is_final`, a match that touches the end of
    `text` does not count yet, since the next characters may make it part of a longer word."""
    for keyword in keywords:
        for match in re.finditer(_keyword_pattern(keyword), text, re.IGNORECASE):
            if is_final or match.end() < len(text):
                return keyword
    return None


def _keyword_pattern(keyword: str) -> str:
    start = r"(?<!\w)" if keyword[:1].isalnum() or keyword[:1] == "_" else ""
    end = r"(?!\w)" if keyword[-1:].isalnum() or keyword[-1:] == "_" else ""
    return start + re.escape(keyword) + end


def release_stream_text(pending: str, side: GuardrailSide, is_final: bool) -> tuple[str, str, str]:
    """(text to send now, text to keep holding, why the stream is blocked or ""). `pending` is what arrived and
    was not sent yet; `is_final`: nothing more will come."""
    reason = _stream_block_reason(pending, side, is_final)
    if reason:
        return "", pending, reason
    if is_final:
        return (mask_pii(pending) if side.pii == PII_MASK else pending), "", ""
    hold = max(STREAM_HOLD_CHARS, max((len(k) + 1 for k in side.invalid_keywords), default=0))
    cut = len(pending) - hold
    if cut <= 0:
        return "", pending, ""
    space = max(pending.rfind(" ", 0, cut + 1), pending.rfind("\n", 0, cut + 1))
    if space >= 0:
        cut = space + 1
    elif len(pending) < MAX_STREAM_HOLD_CHARS:
        return "", pending, ""
    if side.pii != PII_MASK:
        return pending[:cut], pending[cut:], ""
    spans = find_pii(pending)
    for span in spans:
        if span.start < cut < span.end:
            cut = span.start
    return mask_pii(pending[:cut], [s for s in spans if s.end <= cut]), pending[cut:], ""


def _stream_block_reason(pending: str, side: GuardrailSide, is_final: bool) -> str:
    keyword = find_invalid_keyword(pending, side.invalid_keywords, is_final=is_final)
    if keyword is not None:
        return f"it contains the invalid keyword '{keyword}'"
    if side.pii == PII_BLOCK:
        # Unless the stream ended, a value reaching the end of what arrived may still grow: judged once complete.
        kinds = sorted({s.kind for s in find_pii(pending) if is_final or s.end < len(pending)})
        if kinds:
            return f"it contains personal data ({', '.join(kinds)})"
    return ""


# ---- safety and valid_topics: the questions put to the guard endpoint, and reading its verdict ----

SAFE, UNSAFE, ON_TOPIC, OFF_TOPIC = "SAFE", "UNSAFE", "ON_TOPIC", "OFF_TOPIC"
SAFETY_INSTRUCTION = (
    "You are a content safety classifier. Reply with exactly one word: UNSAFE if the text contains or asks for "
    "violent, hateful, harassing, sexual, self-harm, criminal or otherwise harmful content, SAFE otherwise.")
TOPIC_INSTRUCTION = (
    "You are a topic classifier. The allowed topics are: {topics}. Reply with exactly one word: ON_TOPIC if the "
    "text is about one of the allowed topics, OFF_TOPIC otherwise.")


@dataclass(frozen=True)
class Judgement:
    """One question for the guard endpoint: the chat request, and the words that pass or fail."""

    what: str                  # how a block names it: "unsafe content", "off the allowed topics"
    request: dict
    passing: str
    failing: str


def judgements(side: GuardrailSide, text: str) -> list[Judgement]:
    """The questions `side` puts to the guard endpoint about `text` (none if it judges nothing)."""
    asked = []
    if side.safety:
        asked.append(Judgement("it was judged unsafe", _chat(SAFETY_INSTRUCTION, text), SAFE, UNSAFE))
    if side.valid_topics:
        instruction = TOPIC_INSTRUCTION.format(topics="; ".join(side.valid_topics))
        asked.append(Judgement("it was judged off the allowed topics", _chat(instruction, text), ON_TOPIC, OFF_TOPIC))
    return asked


def _chat(instruction: str, text: str) -> dict:
    return {"messages": [{"role": "system", "content": instruction}, {"role": "user", "content": text}],
            "max_tokens": 5, "temperature": 0}


def read_verdict(answer: object, judgement: Judgement) -> bool | None:
    """True: the text passes; False: it fails; None: the answer is no verdict. `answer` is the guard endpoint's
    JSON in the chat shape (`choices[0].message.content`); its first word is the verdict."""
    try:
        content = answer["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    words = re.findall(r"[A-Za-z_]+", content) if isinstance(content, str) else []
    first = words[0].upper() if words else ""
    return True if first == judgement.passing else False if first == judgement.failing else None
