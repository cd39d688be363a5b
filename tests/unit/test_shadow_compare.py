"""Shadow answers against live ones, row by row: a table."""

from __future__ import annotations

import pytest

from services.router.policy.shadow_compare import DIFFERENT, EQUAL, NUMERIC, compare_answers


@pytest.mark.parametrize("live, shadow, verdict, counts, largest", [
    pytest.param(b'{"predictions": [0, 2]}', b'{"predictions": [0, 2]}', EQUAL, (2, 0, 0), 0.0, id="same classes"),
    pytest.param(b'{"predictions": [0, 2]}', b'{"predictions": [0, 1]}', DIFFERENT, (1, 0, 1), 0.0,
                 id="another class in one row"),
    pytest.param(b'{"predictions": [1.0, 2.5]}', b'{"predictions": [1.0, 2.75]}', NUMERIC, (1, 1, 0), 0.25,
                 id="numeric difference"),
    pytest.param(b'{"predictions": [1, 2]}', b'{"predictions": [1.0, 2.0]}', EQUAL, (2, 0, 0), 0.0,
                 id="int and float of one value are equal"),
    pytest.param(b'{"predictions": [{"x": 2.0}, {"x": 4.0}]}', b'{"predictions": [{"x": 2.0}, {"x": 4.5}]}',
                 NUMERIC, (1, 1, 0), 0.5, id="records"),
    pytest.param(b'{"predictions": [[0.1, 0.9]]}', b'{"predictions": [[0.2, 0.8]]}', NUMERIC, (0, 1, 0), 0.1,
                 id="probabilities"),
    pytest.param(b'{"predictions": {"x": [1.0, 2.0]}}', b'{"predictions": {"x": [1.0, 3.0]}}', NUMERIC, (1, 1, 0),
                 1.0, id="a column-oriented frame"),
    pytest.param(b'{"predictions": ["a", "b"]}', b'{"predictions": ["a", "c"]}', DIFFERENT, (1, 0, 1), 0.0,
                 id="strings"),
    pytest.param(b'{"predictions": [1, 2]}', b'{"predictions": [1]}', DIFFERENT, (0, 0, 2), 0.0,
                 id="row counts differ"),
    pytest.param(b'{"predictions": [1]}', b"oops", DIFFERENT, (0, 0, 0), 0.0, id="not JSON"),
    pytest.param(b'{"predictions": [[1.0, 2.0]]}', b'{"predictions": [[1.0]]}', DIFFERENT, (0, 0, 1), 0.0,
                 id="another shape"),
])
def test_compare_answers(live, shadow, verdict, counts, largest):
    comparison = compare_answers(live, shadow)
    assert comparison.verdict == verdict
    assert (comparison.rows_equal, comparison.rows_numeric, comparison.rows_different) == counts
    assert comparison.max_abs_difference == pytest.approx(largest)


def test_llm_answers_compare_their_text_and_keep_the_length_difference():
    live = b'{"choices": [{"message": {"role": "assistant", "content": "Paris."}}], "usage": {"total_tokens": 9}}'
    same = b'{"choices": [{"message": {"role": "assistant", "content": "Paris."}}], "usage": {"total_tokens": 7}}'
    longer = b'{"choices": [{"message": {"role": "assistant", "content": "It is Paris."}}]}'
    assert compare_answers(live, same).verdict == EQUAL   # usage and ids are not the answer
    comparison = compare_answers(live, longer)
    assert (comparison.verdict, comparison.max_length_difference) == (DIFFERENT, 6)
    assert compare_answers(b'{"predictions": ["ab"]}', b'{"predictions": ["abcd"]}').max_length_difference == 2
