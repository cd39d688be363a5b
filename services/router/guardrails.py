"""Enforcing an endpoint's guardrails on its requests and answers (the AI gateway core calls these).

The decisions are services/router/policy/guardrails.py's; this module finds the texts in the wire JSON,
writes masked texts back, and relays streams through the check. A blocked request or answer raises
GuardrailBlocked: 400 BAD_REQUEST in Databricks' error shape, recorded as blocked. Checking a large text
runs in a thread, so a long prompt never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

from services.common.errors import BadRequest, EndpointNotFound, PermissionDenied, PodiumError, Unavailable
from services.common.guardrail_rules import PII_MASK, GuardrailSide
from services.router.external.sse import DONE, data_event, error_event
from services.router.policy.guardrails import (
    Verdict, check_texts, judgements, read_slot, read_verdict, release_stream_text, text_slots, write_slot,
)
from services.router.policy.pii import find_pii, mask_pii
from services.router.results import QueryResult

INLINE_CHECK_CHARS = 16_384   # above this many characters, the check runs in a thread
INPUT_BLOCKED, OUTPUT_BLOCKED = "GUARDRAIL_INPUT_BLOCKED", "GUARDRAIL_OUTPUT_BLOCKED"   # logging_error_codes
# Set while a guard endpoint judges: a guard endpoint whose own guardrails need a judge would otherwise chain
# (or loop back to the endpoint it judges for).
_judging = contextvars.ContextVar("judging", default=False)
Ask = Callable[[str, bytes], Awaitable[QueryResult]]   # (guard endpoint, chat request body) → its answer


class GuardrailBlocked(BadRequest):
    def __init__(self, endpoint: str, is_answer: bool, reason: str):
        what = "answer" if is_answer else "request"
        super().__init__(f"The {what} was blocked by the guardrails of endpoint '{endpoint}': {reason}")
        self.reason = reason
        self.logging_code = OUTPUT_BLOCKED if is_answer else INPUT_BLOCKED


class Judge:
    """Puts an endpoint's safety and valid_topics questions to its guard endpoint, as the caller (who must be
    allowed to query it): its rate limits, records and permissions apply as to any query."""

    def __init__(self, endpoint: str, guard_endpoint: str, ask: Ask):
        self._endpoint = endpoint
        self._guard_endpoint = guard_endpoint
        self._ask = ask

    async def check(self, side: GuardrailSide, texts: list[str], is_answer: bool) -> None:
        """Raises GuardrailBlocked if the guard endpoint fails the texts; fails closed if it cannot judge."""
        text = "\n".join(t for t in texts if t.strip())
        if not text:
            return
        for judgement in judgements(side, text):
            answer = await self._answer(judgement.request)
            verdict = read_verdict(answer, judgement)
            if verdict is None:
                raise Unavailable(f"The guard endpoint '{self._guard_endpoint}' of endpoint '{self._endpoint}' "
                                  f"answered no verdict ({judgement.passing} or {judgement.failing})")
            if not verdict:
                raise GuardrailBlocked(self._endpoint, is_answer, judgement.what)

    async def _answer(self, request: dict) -> object:
        where = f"The guard endpoint '{self._guard_endpoint}' of endpoint '{self._endpoint}'"
        return await ask_judge(self._ask, self._guard_endpoint, request, where)


async def ask_judge(ask: Ask, judge_endpoint: str, request: dict, where: str) -> object:
    """A judge endpoint's JSON answer to a chat request (None if it is no JSON), asked through `ask` (as the
    caller); `where` names the judge in errors. Judges do not chain: a query a judge's question sets off
    (the judge endpoint's own guardrails, shadows) cannot ask a judge in turn. Raises PermissionDenied (the
    caller may not query it, or it is gone) or Unavailable (it could not answer)."""
    if _judging.get():
        raise Unavailable(f"{where} has guardrails judged by a guard endpoint itself: judges do not chain")
    reset = _judging.set(True)
    try:
        result = await ask(judge_endpoint, orjson.dumps(request))
    except (PermissionDenied, EndpointNotFound) as exc:   # the caller may not query it, or it is gone
        raise PermissionDenied(f"{where} could not be queried by the caller: {exc.message}") from None
    except PodiumError as exc:
        raise Unavailable(f"{where} could not judge: {exc.message}", retry_after_s=exc.retry_after_s) from None
    finally:
        _judging.reset(reset)
    try:
        return orjson.loads(result.body)
    except orjson.JSONDecodeError:
        return None


def is_judging() -> bool:
    """Whether this query was set off by a judge's question (shadow.py copies no such query)."""
    return _judging.get()


async def guard_document(endpoint: str, task: str, document: object, side: GuardrailSide, *,
                         is_answer: bool, judge: Judge | None = None) -> bool:
    """Checks the texts of a parsed request or answer, masking them in place; True if any text changed.
    Raises GuardrailBlocked."""
    slots = text_slots(task, document, is_answer=is_answer)
    texts = [read_slot(slot) for slot in slots]
    verdict = await _check(texts, side)
    if verdict.blocked:
        raise GuardrailBlocked(endpoint, is_answer, verdict.blocked)
    if judge is not None and side.is_judged:
        await judge.check(side, verdict.texts, is_answer)
    changed = False
    for slot, before, after in zip(slots, texts, verdict.texts):
        if after != before:
            write_slot(slot, after)
            changed = True
    return changed


async def guard_body(endpoint: str, task: str, body: bytes, side: GuardrailSide, *, is_answer: bool,
                     judge: Judge | None = None) -> bytes:
    """The body to send on: a JSON body checked text by text, anything else as one text."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if document is None:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise BadRequest(f"Endpoint '{endpoint}' checks its traffic with guardrails, which read text: "
                             "this body is neither JSON nor UTF-8 text") from None
        verdict = await _check([text], side)
        if verdict.blocked:
            raise GuardrailBlocked(endpoint, is_answer, verdict.blocked)
        if judge is not None and side.is_judged:
            await judge.check(side, verdict.texts, is_answer)
        return verdict.texts[0].encode()
    if await guard_document(endpoint, task, document, side, is_answer=is_answer, judge=judge):
        return orjson.dumps(document)
    return body


async def _check(texts: list[str], side: GuardrailSide) -> Verdict:
    if sum(len(t) for t in texts) > INLINE_CHECK_CHARS:
        return await asyncio.to_thread(check_texts, texts, side)
    return check_texts(texts, side)


def masked_for_record(body: bytes) -> bytes:
    """A request as the inference table keeps it when it was not sent on: its personal data masked."""
    return mask_pii(body.decode(errors="replace")).encode()


class GuardedStream:
    """An answer's `data:` events relayed through the output checks, text held back as the policy says.

    Blocked mid-stream, the caller gets one error event after the text that passed, and no [DONE]. A side
    the guard endpoint judges (safety, valid_topics) needs the whole answer first: such a stream is held
    until the provider ends it, judged, then sent."""

    def __init__(self, endpoint: str, side: GuardrailSide, chunks: AsyncIterator[bytes], judge: Judge | None = None,
                 *, is_custom: bool = False):
        self._endpoint = endpoint
        self._side = side
        self._chunks = chunks
        self._judge = judge if side.is_judged else None
        # A custom model's events have no one shape (chat chunks, Responses deltas, a pyfunc's own): they are
        # held whole and checked as every string they carry, like a custom model's plain answer.
        self._is_custom = is_custom
        self._pending: dict[int, str] = {}
        self._is_chat = True
        self._template: dict = {}
        self.blocked = ""                      # why the answer was blocked; "" = it was not
        self.error: PodiumError | None = None  # the guard endpoint could not judge it

    async def relay(self) -> AsyncIterator[bytes]:
        source = (self._custom() if self._is_custom else self._judged() if self._judge is not None
                  else self._chunks)
        try:
            async for chunk in source:
                if self._is_custom:
                    yield chunk
                    continue
                for event in chunk.split(b"\n\n"):
                    if event.strip() and not self.blocked:
                        out = self._on_event(event + b"\n\n")
                        if out:
                            yield out
                if self.blocked:
                    break
            if self.blocked:
                yield error_event(GuardrailBlocked(self._endpoint, True, self.blocked).message,
                                  "guardrail_blocked", "BAD_REQUEST")
            elif self.error is not None:
                yield error_event(self.error.message, "guardrail_error", self.error.code)
        finally:
            if source is not self._chunks:
                await source.aclose()  # type: ignore[attr-defined]
            await self._chunks.aclose()  # type: ignore[attr-defined]

    async def _custom(self) -> AsyncIterator[bytes]:
        """A custom model's whole stream, its strings checked (and masked) across all its events."""
        events = [e for e in b"".join([chunk async for chunk in self._chunks]).split(b"\n\n") if e.strip()]
        documents = [_event_document(event) for event in events]
        slots = [slot for _, document in documents if document is not None
                 for slot in text_slots("", document, is_answer=True)]
        texts = [read_slot(slot) for slot in slots]
        verdict = await _check(["".join(texts)], self._side)   # keywords and PII BLOCK across events
        if not verdict.blocked and self._side.pii == PII_MASK:
            masked = (await _check(texts, self._side)).texts
            if find_pii("".join(masked)):   # a value split over events: it cannot be masked, so it is refused
                verdict = Verdict(texts, "it contains personal data split over streamed events")
            texts = masked
        if not verdict.blocked and self._judge is not None:
            try:
                await self._judge.check(self._side, ["".join(texts)], True)
            except GuardrailBlocked as exc:
                verdict = Verdict(texts, exc.reason)
            except PodiumError as exc:   # the judge failed: nothing is sent (fail closed)
                self.error = exc
                return
        if verdict.blocked:
            self.blocked = verdict.blocked
            return
        changed: set[int] = set()   # the documents a mask rewrote; the others leave as the model sent them
        for slot, before, after in zip(slots, [read_slot(slot) for slot in slots], texts):
            if after != before:
                write_slot(slot, after)
                changed.add(id(slot[0]))
        for event, (kind, document) in zip(events, documents):
            rewritten = document is not None and any(id(c) in changed for c in _containers(document))
            yield _event_bytes(event, kind, document) if rewritten else event + b"\n\n"

    async def _judged(self) -> AsyncIterator[bytes]:
        """The provider's whole stream, once the guard endpoint passed its text (GuardrailBlocked otherwise)."""
        assert self._judge is not None
        held = [chunk async for chunk in self._chunks]
        texts: dict[int, str] = {}
        for event in b"".join(held).split(b"\n\n"):
            for index, piece in _pieces(event):
                texts[index] = texts.get(index, "") + piece
        verdict = await _check(list(texts.values()), self._side)   # a keyword or PII block is said first
        if not verdict.blocked:
            try:
                await self._judge.check(self._side, verdict.texts, True)
            except GuardrailBlocked as exc:
                verdict = Verdict(verdict.texts, exc.reason)
            except PodiumError as exc:   # the judge failed: nothing is sent (fail closed)
                self.error = exc
                return
        if verdict.blocked:
            self.blocked = verdict.blocked
            return
        for chunk in held:
            yield chunk

    def _on_event(self, event: bytes) -> bytes:
        if event == DONE:
            flushed = self._flush()
            return b"" if self.blocked else flushed + DONE
        try:
            payload = orjson.loads(event.removeprefix(b"data: ").strip())
        except orjson.JSONDecodeError:
            return event
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if isinstance(payload, dict) and "error" in payload:   # the provider failed: what it sent before still goes
            flushed = self._flush()
            return b"" if self.blocked else flushed + event
        if not choices:
            return event   # a usage chunk: no text in it
        self._template = {k: v for k, v in payload.items() if k not in ("choices", "usage")}
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            self._is_chat = isinstance(delta, dict)
            holder, key = (delta, "content") if self._is_chat else (choice, "text")
            piece = holder.get(key) if isinstance(holder, dict) else None
            if not isinstance(piece, str) and choice.get("finish_reason") is None:
                continue
            pending = self._pending.get(index, "") + (piece if isinstance(piece, str) else "")
            release, hold, self.blocked = release_stream_text(pending, self._side,
                                                              choice.get("finish_reason") is not None)
            if self.blocked:
                return b""
            self._pending[index] = hold
            if isinstance(holder, dict) and (isinstance(piece, str) or release):
                holder[key] = release
        return data_event(payload)

    def _flush(self) -> bytes:
        """What is still held when the provider ends without a finish_reason: checked as final, then sent."""
        out = b""
        for index, pending in self._pending.items():
            if not pending:
                continue
            release, _, self.blocked = release_stream_text(pending, self._side, True)
            if self.blocked:
                return b""
            choice = ({"index": index, "delta": {"content": release}, "finish_reason": None} if self._is_chat
                      else {"index": index, "text": release, "finish_reason": None})
            out += data_event({**self._template, "choices": [choice]})
        self._pending.clear()
        return out



def _pieces(event: bytes) -> list[tuple[int, str]]:
    """(choice index, text) of one streamed `data:` event."""
    try:
        payload = orjson.loads(event.strip().removeprefix(b"data: "))
    except orjson.JSONDecodeError:
        return []
    out = []
    for choice in (payload.get("choices") or ()) if isinstance(payload, dict) else ():
        if isinstance(choice, dict):
            holder = choice.get("delta") if isinstance(choice.get("delta"), dict) else choice
            piece = holder.get("content") if "delta" in choice else holder.get("text")
            if isinstance(piece, str):
                out.append((choice.get("index", 0), piece))
    return out


def _event_document(event: bytes) -> tuple[str, object]:
    """(kind, a container of the event's texts): "json" (its object or array), "string" and "text" (a JSON
    string, or data that is no JSON, as a one-item list), "raw" (nothing to check: [DONE], a number)."""
    data = event.strip().removeprefix(b"data: ")
    if data == b"[DONE]":
        return "raw", None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "text", [data.decode(errors="replace")]
    if isinstance(document, (dict, list)):
        return "json", document
    return ("string", [document]) if isinstance(document, str) else ("raw", None)


def _event_bytes(event: bytes, kind: str, document: object) -> bytes:
    if kind == "json":
        return data_event(document)  # type: ignore[arg-type]
    if kind == "string":
        return b"data: " + orjson.dumps(document[0]) + b"\n\n"  # type: ignore[index]
    if kind == "text":
        return b"data: " + document[0].encode() + b"\n\n"  # type: ignore[index]
    return event + b"\n\n"


def _containers(document: object) -> list[object]:
    """The document and every dict and list inside it (where its texts sit)."""
    out, todo = [], [document]
    while todo:
        item = todo.pop()
        out.append(item)
        todo.extend(v for v in (item.values() if isinstance(item, dict) else item) if isinstance(v, (dict, list)))
    return out
