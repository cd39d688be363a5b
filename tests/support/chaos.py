"""Chaos under load: random SIGKILL / SIGSTOP of a stack's processes while clients query it, one fault at a
time, each followed by the wait until the victim's component serves again (tests/stack/test_chaos.py,
bench/chaos.py).

Faults and what "serves again" means for each component:
- router (one of PODIUM_ROUTER_PROCESSES peers on the shared ports): every router's metrics port answers;
- replica (a worker of the endpoint): as many ready replicas as before, the victim not among them;
- control_plane: a management read through the router answers 200;
- scaler: its /metrics answers;
- redis: it answers PING on its socket.
A kill is measured from the signal; a stop (SIGSTOP held `stop_s`, then SIGCONT) from the SIGCONT.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis
import requests

from services.scaler.replica_records import ReplicaRecords
from tests.support.stack import RunningStack, redis_pids, service_pids, worker_pids

COMPONENTS = ("router", "replica", "control_plane", "scaler", "redis")


@dataclass
class Fault:
    component: str
    action: str                  # "kill" or "stop"
    pid: int
    at_s: float                  # since the run began
    recovered_s: float | None = None   # kill: from the signal; stop: from SIGCONT; None: not within the deadline
    failed: int = 0              # requests that failed while this fault was the latest one


@dataclass
class Outcome:
    started_at: float = field(default_factory=time.monotonic)
    answers: Counter = field(default_factory=Counter)    # status code, or the exception's name
    failure_times: list[tuple[float, object, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status, body: str = "") -> None:
        with self.lock:
            self.answers[status] += 1
            if status != 200:
                self.failure_times.append((time.monotonic() - self.started_at, status, body[:200]))

    @property
    def total(self) -> int:
        return sum(self.answers.values())

    @property
    def failed(self) -> int:
        return self.total - self.answers[200]


class Clients:
    """`clients` threads querying one URL back to back (keep-alive, as a client library does)."""

    def __init__(self, url: str, token: str, payload: dict, clients: int, outcome: Outcome, timeout_s: float = 30.0):
        self._url, self._payload, self._timeout_s, self.outcome = url, payload, timeout_s, outcome
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    reply = session.post(self._url, json=self._payload, headers=self._headers, timeout=self._timeout_s)
                    self.outcome.record(reply.status_code, reply.text)
                except requests.RequestException as exc:
                    self.outcome.record(type(exc).__name__, str(exc))

    def __enter__(self) -> "Clients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout_s + 5)


class Chaos:
    """Injects faults into `stack`, whose endpoint `endpoint` serves model `model_uri` on `replicas` replicas."""

    def __init__(self, stack: RunningStack, endpoint: str, model_uri: str, replicas: int, routers: int,
                 rng: random.Random, stop_s: tuple[float, float] = (0.5, 2.5), recover_timeout_s: float = 30.0):
        self.stack, self.endpoint, self.model_uri = stack, endpoint, model_uri
        self.replicas, self.routers, self.rng = replicas, routers, rng
        self.stop_s, self.recover_timeout_s = stop_s, recover_timeout_s
        self.faults: list[Fault] = []

    def pids(self, component: str) -> list[int]:
        data_dir = self.stack.data_dir
        if component == "replica":
            return worker_pids(data_dir, self.model_uri)
        if component == "redis":
            return redis_pids(data_dir)
        return service_pids(data_dir, f"services.{component}")

    def is_serving(self, component: str, victim: int) -> bool:
        info = self.stack.info
        try:
            if component == "router":
                return len(self.pids("router")) == self.routers and all(
                    requests.get(f"http://{a}/metrics", timeout=1).ok for a in info["metrics"]["router"])
            if component == "replica":
                pids = self.pids("replica")
                return victim not in pids and len(pids) == self.replicas and self.ready_replicas() == self.replicas
            if component == "control_plane":
                return self.stack.api("GET", f"/api/2.0/serving-endpoints/{self.endpoint}", timeout_s=2).ok
            if component == "scaler":
                return bool(self.pids("scaler")) and requests.get(
                    f"http://{info['metrics']['scaler']}/metrics", timeout=1).ok
            return bool(redis.Redis.from_url(info["redis_url"], socket_timeout=1).ping())
        except (requests.RequestException, redis.RedisError, OSError):
            return False

    def ready_replicas(self) -> int:
        endpoint = self.stack.api("GET", f"/api/2.0/serving-endpoints/{self.endpoint}", timeout_s=2).json()
        return endpoint["config"]["served_entities"][0]["state"].get("ready_replicas", 0)

    def inject(self, component: str, action: str, started_at: float) -> Fault:
        """One fault, and the wait until the component serves again (bounded by recover_timeout_s)."""
        victim = self.rng.choice(self.pids(component))
        fault = Fault(component, action, victim, time.monotonic() - started_at)
        self.faults.append(fault)
        if action == "kill":
            os.kill(victim, signal.SIGKILL)
            since = time.monotonic()
        else:
            os.kill(victim, signal.SIGSTOP)
            time.sleep(self.rng.uniform(*self.stop_s))   # how long it stays frozen is the fault itself
            try:
                os.kill(victim, signal.SIGCONT)
            except ProcessLookupError:
                pass   # a frozen replica the scaler has killed meanwhile
            since = time.monotonic()
        deadline = since + self.recover_timeout_s
        while time.monotonic() < deadline:
            if self.is_serving(component, victim if action == "kill" else -1):
                fault.recovered_s = time.monotonic() - since
                break
            time.sleep(0.02)
        return fault

    def run(self, seconds: float, interval_s: tuple[float, float], started_at: float) -> None:
        """Faults one after another for `seconds`: a component and an action drawn at random, the next one
        `interval_s` (drawn) after the previous began, or once it recovered if that took longer."""
        end = started_at + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            component = self.rng.choice(COMPONENTS)
            self.inject(component, "kill" if self.rng.random() < 0.7 else "stop", started_at)
            pause = began + self.rng.uniform(*interval_s) - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, max(0.0, end - time.monotonic())))   # spacing faults is the test's design

    def attribute(self, outcome: Outcome) -> None:
        """Counts each failed request against the latest fault begun before it (by the time it ended)."""
        for at_s, _, _ in outcome.failure_times:
            latest = [f for f in self.faults if f.at_s <= at_s]
            if latest:
                latest[-1].failed += 1

    def orphans(self) -> tuple[list[int], list[int]]:
        """(worker processes no replica record accounts for, records whose process is gone): the scaler's
        view against /proc's."""
        records = ReplicaRecords(self.stack.data_dir / "replicas").live()
        running = set(worker_pids(self.stack.data_dir))
        recorded = {r.pid for r in records}
        return sorted(running - recorded), sorted(recorded - running)


def summarize(chaos: Chaos, outcome: Outcome) -> dict:
    """Per component and action: faults, failed requests, and recovery times (max, median)."""
    rows: dict[str, dict] = {}
    for fault in chaos.faults:
        row = rows.setdefault(f"{fault.component} {fault.action}", {"faults": 0, "failed": 0, "recovered_s": []})
        row["faults"] += 1
        row["failed"] += fault.failed
        row["recovered_s"].append(fault.recovered_s)
    for row in rows.values():
        times = sorted(t for t in row["recovered_s"] if t is not None)
        row["not_recovered"] = len(row["recovered_s"]) - len(times)
        row["recovered_s"] = [round(t, 2) for t in row["recovered_s"] if t is not None]
        row["median_s"] = round(times[len(times) // 2], 2) if times else None
        row["max_s"] = round(times[-1], 2) if times else None
    return {"requests": outcome.total, "failed": outcome.failed, "answers": dict(outcome.answers), "faults": rows}
