"""Chaos under load (docs/operations.md, Failure behaviour): a stack with two peer routers on one port, six
clients querying it, and random SIGKILL / SIGSTOP of routers, a replica, the control plane, the scaler and
Redis, one fault at a time (seeded; tests/support/chaos.py). Afterwards:
- every fault recovered: the component serves again (the longer version, bench/chaos.py, reports the times);
- specs intact: every endpoint's id and served entities unchanged;
- every replica process accounted for: the scaler's records and /proc agree, as many replicas as asked;
- failed requests bounded by those in flight on killed routers: per router kill, at most two per client (the
  request in flight on it, and one whose new connection the kernel queued on it in the milliseconds its exit
  takes); none on any other fault.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from services.common.standby import STANDBY_MODULE, is_waiting_spare
from tests.support.chaos import Chaos, Clients, Outcome, summarize
from tests.support.slow_model import register_slow_model
from tests.support.stack import FAULTS, service_pids, start_stack, wait_for

pytestmark = pytest.mark.stack

CLIENTS = 6
ROUTERS = 2
REPLICAS = 2
SEED = 22
CHAOS_S = 40.0


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("chaos"), {**FAULTS, "PODIUM_ROUTER_PROCESSES": str(ROUTERS)})
    yield running
    running.stop()


def _specs(stack) -> list[tuple]:
    endpoints = stack.api("GET", "/api/2.0/serving-endpoints").json()["endpoints"]
    return sorted((e["name"], e["id"], json.dumps(e["config"]["served_entities"], sort_keys=True)) for e in endpoints)


def test_chaos_loses_no_spec_no_replica_and_only_requests_in_flight_on_killed_routers(chaos_stack):
    assert len(chaos_stack.info["metrics"]["router"]) == ROUTERS
    assert len(service_pids(chaos_stack.data_dir, "services.router")) == ROUTERS
    model = register_slow_model(chaos_stack.info, "main.default.chaos", delay_s=0.05)
    uri = f"models:/{model.name}/{model.version}"
    chaos_stack.serve("chaos", [{"entity_name": model.name, "entity_version": model.version,
                                 "min_provisioned_concurrency": 4, "max_provisioned_concurrency": 4}])
    chaos = Chaos(chaos_stack, "chaos", uri, replicas=REPLICAS, routers=ROUTERS, rng=random.Random(SEED))
    wait_for(lambda: chaos.is_serving("replica", -1), timeout_s=90, what="two ready replicas")
    specs_before = _specs(chaos_stack)

    outcome = Outcome()
    payload = {"dataframe_records": model.frame.to_dict(orient="records")}
    with Clients(chaos_stack.url + "/serving-endpoints/chaos/invocations", chaos_stack.admin_token, payload,
                 CLIENTS, outcome, timeout_s=float(FAULTS["PODIUM_FORWARD_TIMEOUT_S"]) + 20):
        wait_for(lambda: outcome.answers[200] >= 20, timeout_s=30, what="the load to flow")
        chaos.run(CHAOS_S, interval_s=(2.0, 4.0), started_at=outcome.started_at)
        settled = outcome.answers[200]
        wait_for(lambda: outcome.answers[200] >= settled + 20, timeout_s=30, what="the load to flow after the chaos")
    chaos.attribute(outcome)
    report = summarize(chaos, outcome)
    print(json.dumps(report))

    assert chaos.faults and all(f.recovered_s is not None for f in chaos.faults), report
    assert _specs(chaos_stack) == specs_before
    # The scaler's view (its replica records) and /proc's agree, with as many replicas as asked.
    wait_for(lambda: chaos.orphans() == ([], []) and chaos.is_serving("replica", -1), timeout_s=30,
             what=f"replicas accounted for (unrecorded, gone): {chaos.orphans()}")
    router_kills = sum(1 for f in chaos.faults if (f.component, f.action) == ("router", "kill"))
    assert outcome.failed <= 2 * CLIENTS * router_kills, report
    assert all(f.failed == 0 for f in chaos.faults if (f.component, f.action) != ("router", "kill")), report
    started = time.monotonic()
    reply = chaos_stack.api("POST", "/serving-endpoints/chaos/invocations", json=payload)
    assert reply.status_code == 200 and time.monotonic() - started < 5, reply.text


def _cmdline(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def test_a_killed_router_is_replaced_by_its_spare_and_a_new_spare_waits(chaos_stack):
    """The router that replaces a killed one is the spare that had its imports done (services/common/standby.py),
    and the next spare is made once it serves; the control plane and the scaler have one each too."""
    routers = service_pids(chaos_stack.data_dir, "services.router")
    os.kill(routers[0], signal.SIGKILL)
    wait_for(lambda: len(set(service_pids(chaos_stack.data_dir, "services.router")) - set(routers)) == 1,
             timeout_s=30, what="a router in place of the killed one")
    [replacement] = set(service_pids(chaos_stack.data_dir, "services.router")) - set(routers)
    assert STANDBY_MODULE.encode() in _cmdline(replacement)
    wait_for(lambda: len(_waiting_spares(chaos_stack.data_dir, "services.router")) == ROUTERS, timeout_s=30,
             what="a spare per router")
    for service in ("services.control_plane", "services.scaler"):
        assert len(_waiting_spares(chaos_stack.data_dir, service)) == 1, service
    assert chaos_stack.api("GET", "/api/2.0/serving-endpoints").status_code == 200


def _waiting_spares(data_dir, module: str) -> list[int]:
    spares = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or module.encode() not in (cmdline := _cmdline(int(proc.name))):
                continue
            if is_waiting_spare(cmdline, (proc / "comm").read_bytes()) \
                    and f"PODIUM_DATA_DIR={data_dir}".encode() in (proc / "environ").read_bytes():
                spares.append(int(proc.name))
        except OSError:
            continue
    return spares
