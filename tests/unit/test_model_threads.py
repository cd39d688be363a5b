"""A replica's torch thread cap: one intra-op thread per call where the entity's replicas share the cores."""

import pytest

from services.worker.model_threads import call_threads, limit_call_threads


@pytest.mark.parametrize("environment, device, wide_calls, expected", [
    ({}, "cpu", False, 1),                            # replicas share the cores: one thread per call
    ({}, "cpu", True, None),                          # merged calls of many rows keep torch's default
    ({}, "cuda", False, None),                        # a GPU replica keeps torch's default
    ({"OMP_NUM_THREADS": "4"}, "cpu", False, None),   # the served entity's own setting wins
    ({"OMP_NUM_THREADS": ""}, "cpu", False, 1),       # an empty value sets nothing
    ({"MKL_NUM_THREADS": "4"}, "cpu", False, 1),      # not torch's intra-op setting
])
def test_call_threads(environment, device, wide_calls, expected):
    assert call_threads(environment, device, wide_calls) == expected


def test_limit_call_threads_caps_torch_for_threads_started_after_it():
    torch = pytest.importorskip("torch")
    from concurrent.futures import ThreadPoolExecutor

    before = torch.get_num_threads()
    try:
        assert limit_call_threads(1) is True
        assert torch.get_num_threads() == 1
        with ThreadPoolExecutor(1) as pool:   # a predict thread started after the cap
            assert pool.submit(torch.get_num_threads).result() == 1
    finally:
        torch.set_num_threads(before)


def test_limit_call_threads_without_torch_does_nothing(monkeypatch):
    import sys
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert limit_call_threads(1) is False
