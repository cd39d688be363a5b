"""How a shadow served entity's answer compares with the live one, row by row (pure).

Each row of the two answers' `predictions` (MLflow's scoring answer; an answer without that key is one row)
is EQUAL, a NUMERIC difference (both numbers, not both integers, or lists/objects of them of the same
shape, that differ: the largest absolute difference is kept) or DIFFERENT (another class: integers or
strings that differ, another type or shape). The answer's
verdict is the worst of its rows; answers with different row counts, or that are not JSON, are DIFFERENT.
Text (an LLM's answer: a string row, or the content of each OpenAI-style choice) that differs is DIFFERENT
and its largest difference in length, in characters, is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

EQUAL, NUMERIC, DIFFERENT = "equal", "numeric_difference", "different"
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


def compare_answers(live: bytes, shadow: bytes) -> Comparison:
    """The comparison of two JSON answer bodies."""
    try:
        live_rows, shadow_rows = _rows(orjson.loads(live)), _rows(orjson.loads(shadow))
    except orjson.JSONDecodeError:
        return Comparison(DIFFERENT)
    if len(live_rows) != len(shadow_rows):
        return Comparison(DIFFERENT, rows=len(live_rows), rows_different=len(live_rows))
    counts = {EQUAL: 0, NUMERIC: 0, DIFFERENT: 0}
    worst, largest, longest = EQUAL, 0.0, 0
    for a, b in zip(live_rows, shadow_rows):
        verdict, difference = _compare(a, b)
        counts[verdict] += 1
        largest = max(largest, difference) if verdict == NUMERIC else largest
        if isinstance(a, str) and isinstance(b, str):
            longest = max(longest, abs(len(a) - len(b)))
        worst = verdict if _RANK[verdict] > _RANK[worst] else worst
    return Comparison(worst, len(live_rows), counts[EQUAL], counts[NUMERIC], counts[DIFFERENT], largest, longest)


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
