"""The restart policy of `podium up` (podium/supervision.py), as a table."""

from __future__ import annotations

import pytest

from podium.supervision import RestartMemory, RestartPolicy, decide_restart
from services.common.standby import is_waiting_spare, running_name


@pytest.mark.parametrize("ready_at, exited_at, quick_exits, want_delay, want_quick_exits", [
    pytest.param(0.0, 60.0, 0, 0.0, 0, id="healthy for a minute: at once"),
    pytest.param(0.0, 60.0, 5, 0.0, 0, id="healthy again: the crash loop is forgotten"),
    pytest.param(0.0, 10.0, 3, 0.0, 0, id="exactly healthy_after_s counts as healthy"),
    pytest.param(0.0, 2.0, 0, 0.0, 1, id="first quick exit (a kill right after start): still at once"),
    pytest.param(0.0, 2.0, 1, 0.5, 2, id="second quick exit in a row: backs off"),
    pytest.param(0.0, 2.0, 2, 1.0, 3, id="third"),
    pytest.param(None, 2.0, 3, 2.0, 4, id="never became ready counts as quick"),
    pytest.param(None, 0.1, 5, 10.0, 6, id="capped at the last delay"),
    pytest.param(None, 0.1, 40, 10.0, 41, id="stays capped"),
])
def test_decide_restart(ready_at, exited_at, quick_exits, want_delay, want_quick_exits):
    delay, memory = decide_restart(ready_at, exited_at, RestartMemory(quick_exits), RestartPolicy())
    assert (delay, memory.quick_exits) == (want_delay, want_quick_exits)


def test_a_crash_loop_then_health_recovers_at_once():
    """Repeated kills of a healthy process never slow its restart; a loop backs off and then resets."""
    memory, delays = RestartMemory(), []
    for ready_at in (0.0, 30.0, 60.0, 90.0):        # killed 20 s after each start: always healthy
        delay, memory = decide_restart(ready_at, ready_at + 20.0, memory)
        delays.append(delay)
    for _ in range(4):                               # then it dies before becoming ready, four times
        delay, memory = decide_restart(None, 200.0, memory)
        delays.append(delay)
    delay, memory = decide_restart(300.0, 311.0, memory)   # up for 11 s: healthy again
    delays.append(delay)
    assert delays == [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 0.0]
    assert memory == RestartMemory()


def test_a_spare_counts_as_its_service_only_once_told_to_go():
    spare = [b"/venv/bin/python", b"-m", b"services.common.standby", b"services.router", b""]
    assert is_waiting_spare(spare, b"python3.11\n")            # just started: still importing
    assert is_waiting_spare(spare, b"python\n")
    assert not is_waiting_spare(spare, running_name("services.router") + b"\n")
    assert not is_waiting_spare([b"python", b"-m", b"services.router", b""], b"python\n")
    assert running_name("services.router") == b"podium-router"
    control_plane = [b"python", b"-m", b"services.common.standby", b"services.control_plane", b""]
    assert not is_waiting_spare(control_plane, b"podium-control_\n")   # the kernel keeps 15 bytes of a name
