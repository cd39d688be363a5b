"""How a shadow served entity's answer compares with the live one, row by row (pure).

Each row of the two answers' `predictions` (MLflow's scoring answer; an answer without that key is one row)
is EQUAL, a NUMERIC difference (both numbers, not both integers, or lists/objects of them of the same
shape, that differ: the largest absolute difference is kept) or DIFFERENT (another class: integers or
strings that differ, another type or shape). The answer's
verdict is the worst of its rows; answers with different row counts, or that are not JSON, are DIFFERENT.
Text (an LLM's answer: a string row, or the content of each OpenAI-style choice) that differs is DIFFERENT
and its largest difference in length, in characters, is kept.

A shadow entity with a judge endpoint (`shadow_judge_endpoint`) has its differing text answers judged: the
chat request that asks whether two answers agree (judge_request), and reading the judge's verdict, a yes/no
or a score, from its answer (read_agreement). The verdict replaces DIFFERENT with JUDGE_AGREE or
JUDGE_DISAGREE, or JUDGE_ERROR when the judge gave none (services/router/shadow.py asks it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

EQUAL, NUMERIC, DIFFERENT = "equal", "numeric_difference", "different"
JUDGE_AGREE, JUDGE_DISAGREE, JUDGE_ERROR = "judge_agree", "judge_disagree", "judge_error"
_RANK = {EQUAL: 0, NUMERIC: 1, DIFFERENT: 2}


@dataclass(frozen=True)
class Comparison:
    verdict: str
    rows: int = 0
    rows_equal: int = 0
    rows_numeric: int = 0
    rows_different: int = 0
    max_abs_difference: float = 0.0
    max_length_difference: int = 0      # text rows: the largest difference in length
    # Both answers are text throughout (an LLM's): the (live, shadow) texts of the rows that differ.
    texts: tuple[tuple[str, str], ...] = ()


def compare_answers(live: bytes, shadow: bytes) -> Comparison:
    """The comparison of two JSON answer bodies."""
    try:
        live_rows, shadow_rows = _rows(orjson.loads(live)), _rows(orjson.loads(shadow))
    except orjson.JSONDecodeError:
        return Comparison(DIFFERENT)
    if len(live_rows) != len(shadow_rows):
        return Comparison(DIFFERENT, rows=len(live_rows), rows_different=len(live_rows))
    counts = {EQUAL: 0, NUMERIC: 0, DIFFERENT: 0}
    worst, largest, longest, texts = EQUAL, 0.0, 0, []
    for a, b in zip(live_rows, shadow_rows):
        verdict, difference = _compare(a, b)
        counts[verdict] += 1
        largest = max(largest, difference) if verdict == NUMERIC else largest
        if isinstance(a, str) and isinstance(b, str):
            longest = max(longest, abs(len(a) - len(b)))
            if verdict == DIFFERENT:
                texts.append((a, b))
        worst = verdict if _RANK[verdict] > _RANK[worst] else worst
    is_text = bool(live_rows) and all(isinstance(a, str) and isinstance(b, str) for a, b in zip(live_rows, shadow_rows))
    return Comparison(worst, len(live_rows), counts[EQUAL], counts[NUMERIC], counts[DIFFERENT], largest, longest,
                      tuple(texts) if is_text else ())


def _rows(answer: Any) -> list:
    if isinstance(answer, dict) and "predictions" in answer:
        answer = answer["predictions"]
    if isinstance(answer, dict) and isinstance(answer.get("choices"), list):   # chat or completions
        return [_text(choice) for choice in answer["choices"]]
    if isinstance(answer, dict):   # a column-oriented frame: {"col": [v, ...]} → rows of the columns' values
        columns = list(answer.values())
        if columns and all(isinstance(c, list) and len(c) == len(columns[0]) for c in columns):
            return [list(row) for row in zip(*columns)]
        return [answer]
    return answer if isinstance(answer, list) else [answer]


def _text(choice: Any) -> Any:
    if isinstance(choice, dict):
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
        if isinstance(choice.get("text"), str):
            return choice["text"]
    return choice


def _compare(a: Any, b: Any) -> tuple[str, float]:
    if _is_number(a) and _is_number(b):
        if a == b:
            return EQUAL, 0.0
        if isinstance(a, int) and isinstance(b, int):   # integer answers are labels: another class
            return DIFFERENT, 0.0
        difference = abs(float(a) - float(b))
        return (NUMERIC, difference) if not math.isnan(difference) else (DIFFERENT, 0.0)
    if a == b and type(a) is type(b):
        return EQUAL, 0.0
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return _worst(_compare(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return _worst(_compare(a[k], b[k]) for k in a)
    return DIFFERENT, 0.0


def _worst(parts) -> tuple[str, float]:
    verdict, largest = EQUAL, 0.0
    for part, difference in parts:
        verdict = part if _RANK[part] > _RANK[verdict] else verdict
        largest = max(largest, difference)
    return verdict, largest


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- a judge endpoint's verdict on two text answers ----

MAX_JUDGED_CHARS = 8000      # of each answer: longer texts are cut (the judge's context and cost are bounded)
MAX_JUDGED_ROWS = 4          # differing rows (choices) of one answer put to the judge; the rest are not judged
JUDGE_INSTRUCTION = (
    "You compare two answers to the same request. Reply with exactly one word: YES if they agree (the same "
    "facts, decision and conclusion, whatever the wording), NO if they do not.")
_AGREE = {"yes", "y", "agree", "agrees", "agreed", "same", "equivalent", "true", "match", "matches"}
_DISAGREE = {"no", "n", "disagree", "disagrees", "different", "differ", "false", "mismatch"}
_LABELS = {"answer", "verdict", "score", "judgement", "judgment", "final", "result", "agreement", "rating", "is",
           "the", "my", "output", "decision"}
_TOKEN = re.compile(r"(\d+(?:\.\d+)?)\s*(%|/\s*(\d+(?:\.\d+)?))?|([A-Za-z]+)")


def judge_request(live: str, shadow: str) -> dict:
    """The chat request that asks the judge endpoint whether the live and the shadow text agree."""
    return {"messages": [{"role": "system", "content": JUDGE_INSTRUCTION},
                         {"role": "user", "content": f"Answer A:\n{live[:MAX_JUDGED_CHARS]}\n\n"
                                                     f"Answer B:\n{shadow[:MAX_JUDGED_CHARS]}"}],
            "max_tokens": 8, "temperature": 0}


def read_agreement(answer: Any) -> bool | None:
    """True: the judge says the answers agree; False: they do not; None: its answer holds no verdict.

    `answer` is the judge's JSON answer in the chat shape (`choices[0].message.content`; a completion's
    `text` or a bare string are read too). Its first word after a label ("Answer:", "Verdict:", markdown)
    is the verdict: yes/no (agree, same, true / disagree, different, false), or a score: a number from 0 to 1,
    a percentage or "n/m", agreeing from one half up."""
    content = answer
    if isinstance(answer, dict):
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"] if isinstance(choice.get("message"), dict) else choice.get("text")
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    if not isinstance(content, str):
        return None
    for match in _TOKEN.finditer(content):
        number, suffix, denominator, word = match.groups()
        if word is not None:
            word = word.lower()
            if word in _LABELS:
                continue
            return True if word in _AGREE else False if word in _DISAGREE else None
        value = float(number)
        if suffix == "%":
            value /= 100
        elif denominator is not None:
            value = value / float(denominator) if float(denominator) > 0 else -1.0
        return value >= 0.5 if 0 <= value <= 1 else None
    return None


def judged_verdict(verdicts: list[bool | None]) -> str:
    """The comparison's outcome from the judge's verdicts on its differing rows: one disagreement disagrees;
    otherwise a row the judge could not judge makes it JUDGE_ERROR."""
    if any(v is False for v in verdicts):
        return JUDGE_DISAGREE
    if not verdicts or any(v is None for v in verdicts):
        return JUDGE_ERROR
    return JUDGE_AGREE
