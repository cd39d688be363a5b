"""Canary rollouts, driven: the clock that judges every running rollout against the routers' live query
outcomes, and the manual operations (pause, resume, promote, abort).

A rollout lives in its endpoint's stored document (state.py says its phases), so a restarted control plane
goes on where it was: the step, when it began and the counters its window started from are all stored.
Each pass reads the routers' outcome counters once (Redis), and for every RUNNING rollout either stores the
baseline of a window that has none yet, or asks rollout_policy.judge_step what to do and applies it. The
counters include the shadow comparisons of the candidate's deployments (services/common/outcomes.py), which
the plan's shadow-agreement gate reads. The
latest judgement of each rollout is kept in memory for GET .../rollout; only transitions are written. So are
the rollout's judgements since it began (its history, which the UI's charts start from): at most
MAX_HISTORY of them, every other one dropped when full, so they span the whole rollout at a coarser grain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from services.common.errors import Conflict, InvalidParameter
from services.common.outcomes import shadow_key
from services.common.principals import CAN_MANAGE, CAN_VIEW
from services.control_plane import rollout_policy as policy
from services.control_plane.state import (
    ABORTED, PAUSED, PROMOTED, ROLLED_BACK, RUNNING, WAITING, has_active_rollout, move_rollout, rollout_sides,
)
from services.control_plane.views import rollout_view

if TYPE_CHECKING:  # handed in by __main__
    from services.control_plane.core import EndpointService
    from services.control_plane.outcomes_reader import OutcomesReader

log = logging.getLogger(__name__)

_NEXT = {policy.ROLLBACK: ROLLED_BACK, policy.PROMOTE: PROMOTED, policy.ADVANCE: RUNNING}
MAX_HISTORY = 300   # judgements kept per rollout


class RolloutService:
    def __init__(self, endpoints: "EndpointService", outcomes: "OutcomesReader | None", *, interval_s: float = 1.0,
                 clock=time.time):
        self._endpoints = endpoints
        self._outcomes = outcomes      # None: no Redis, so no outcomes; running rollouts hold their step
        self._interval_s = interval_s
        self._clock = clock
        self._judgements: dict[str, dict] = {}   # endpoint name -> the latest judgement of its rollout
        # endpoint name -> (its rollout's config version, the rollout's judgements, oldest first)
        self._history: dict[str, tuple[int, list[dict]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("rollout pass failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    async def tick(self) -> None:
        """One pass over the running rollouts."""
        endpoints = self._endpoints.endpoints()
        running = [e["name"] for e in endpoints.values() if has_active_rollout(e) and e["rollout"]["phase"] == RUNNING]
        self._judgements = {n: j for n, j in self._judgements.items() if n in running}
        self._history = {n: h for n, h in self._history.items() if n in endpoints}   # deleted endpoints' go
        if not running or self._outcomes is None:
            return
        counters = await self._outcomes.read()
        if counters is None:
            return
        for name in running:
            await self._judge(name, counters)

    async def _judge(self, name: str, counters: dict) -> None:
        endpoint = self._endpoints.endpoints().get(name)
        if endpoint is None or not has_active_rollout(endpoint) or endpoint["rollout"]["phase"] != RUNNING:
            return
        rollout = endpoint["rollout"]
        marker = (rollout["config_version"], rollout["step"], rollout["step_started_ms"])
        candidate_keys, incumbent_keys = rollout_sides(endpoint)
        if rollout["baseline"] is None:   # a new window: it counts from here
            keys = candidate_keys | incumbent_keys | {shadow_key(k) for k in candidate_keys}
            baseline = {router: {k: v for k, v in deployments.items() if k in keys}
                        for router, deployments in counters.items()}
            await self._change(name, marker, lambda e: {**e, "rollout": {**e["rollout"], "baseline": baseline}})
            return
        candidate = policy.window_stats(counters, rollout["baseline"], candidate_keys)
        incumbent = policy.window_stats(counters, rollout["baseline"], incumbent_keys)
        shadow = policy.shadow_window_stats(counters, rollout["baseline"], candidate_keys)
        now = self._clock()
        elapsed_s = max(0.0, now - rollout["step_started_ms"] / 1000)
        decision = policy.judge_step(rollout["plan"], rollout["step"], elapsed_s, candidate, incumbent, shadow)
        judgement = {"step": rollout["step"] + 1, "decision": decision.action, "reason": decision.reason,
                     "window_s": round(elapsed_s, 1), "timestamp": int(now * 1000), "candidate": candidate.as_dict(),
                     "incumbent": incumbent.as_dict()}
        if shadow.comparisons or "min_shadow_agreement" in rollout["plan"]["gates"]:
            judgement["shadow"] = shadow.as_dict()
        self._judgements[name] = judgement
        self._remember(name, rollout["config_version"], judgement)
        if decision.action == policy.HOLD:
            return
        step = rollout["step"] + 1 if decision.action == policy.ADVANCE else None
        now_ms = int(now * 1000)

        def apply(e: dict) -> dict:
            moved = move_rollout(e, _NEXT[decision.action], decision.reason, now_ms, step=step)
            return {**moved, "rollout": {**moved["rollout"], "last_judgement": judgement}}

        if await self._change(name, marker, apply):
            log.info("rollout of endpoint %s: %s (%s)", name, decision.action, decision.reason)

    def _remember(self, name: str, config_version: int, judgement: dict) -> None:
        version, judgements = self._history.get(name, (None, []))
        if version != config_version:   # a new rollout: its history starts here
            judgements = []
            self._history[name] = (config_version, judgements)
        judgements.append(judgement)
        if len(judgements) > MAX_HISTORY:   # full: every other one goes, the first and the latest stay
            judgements[:] = judgements[:-1:2] + judgements[-1:]

    async def _change(self, name: str, marker: tuple, change) -> bool:
        """Applies `change` if the rollout is still at the step `marker` names (a manual call may have
        moved it meanwhile); whether it did."""
        applied = False

        def guarded(endpoint: dict) -> dict:
            nonlocal applied
            rollout = endpoint.get("rollout") or {}
            now = (rollout.get("config_version"), rollout.get("step"), rollout.get("step_started_ms"))
            if not has_active_rollout(endpoint) or rollout["phase"] != RUNNING or now != marker:
                return endpoint
            applied = True
            return change(endpoint)

        await self._endpoints.modify(name, guarded)
        return applied

    # ---- the management API: /api/2.0/serving-endpoints/{name}/rollout ----

    async def get(self, token: str, name: str, judgements_since: str | None = None) -> dict:
        """The endpoint's rollout (the latest one, finished or not), its latest judgement, its event log and
        its judgements since it began (`judgements`; with `judgements_since`, a time in ms, only later ones)."""
        try:
            since = int(judgements_since) if judgements_since not in (None, "") else -1
        except ValueError:
            raise InvalidParameter("judgements_since must be a time in milliseconds since the epoch") from None
        endpoint = (await self._endpoints.authorized(token, name, CAN_VIEW))[0]
        version, judgements = self._history.get(name, (None, []))
        if version != (endpoint.get("rollout") or {}).get("config_version"):
            judgements = []
        return {"name": name, "rollout": rollout_view(endpoint, self._judgements.get(name)),
                "events": list(endpoint.get("rollout_events", [])),
                "judgements": [j for j in judgements if j["timestamp"] > since]}

    async def pause(self, token: str, name: str) -> dict:
        return await self._manual(token, name, (RUNNING,), PAUSED, "paused by {caller}")

    async def resume(self, token: str, name: str) -> dict:
        """A resumed step starts a new window: what happened while paused is not judged."""
        return await self._manual(token, name, (PAUSED,), RUNNING, "resumed by {caller}", new_window=True)

    async def promote(self, token: str, name: str) -> dict:
        return await self._manual(token, name, (RUNNING, PAUSED), PROMOTED, "promoted by {caller}")

    async def abort(self, token: str, name: str) -> dict:
        return await self._manual(token, name, (WAITING, RUNNING, PAUSED), ABORTED, "aborted by {caller}")

    async def _manual(self, token: str, name: str, allowed: tuple[str, ...], phase: str, reason: str, *,
                      new_window: bool = False) -> dict:
        caller = (await self._endpoints.authorized(token, name, CAN_MANAGE))[2]
        refusal = ""

        def change(endpoint: dict) -> dict:
            nonlocal refusal
            if not has_active_rollout(endpoint):
                refusal = f"Endpoint '{name}' has no rollout under way"
                return endpoint
            current = endpoint["rollout"]["phase"]
            if current not in allowed:
                refusal = f"The rollout of endpoint '{name}' is {current}: it cannot be {phase.lower()} now"
                return endpoint
            step = endpoint["rollout"]["step"] if new_window else None
            return move_rollout(endpoint, phase, reason.format(caller=caller.name), int(self._clock() * 1000),
                                step=step)

        endpoint = await self._endpoints.modify(name, change)
        if refusal:
            raise Conflict(refusal)
        log.info("rollout of endpoint %s: %s by %s", name, phase, caller.name)
        return {"name": name, "rollout": rollout_view(endpoint, self._judgements.get(name))}

