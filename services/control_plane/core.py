"""The control plane's one core: serving-endpoint specs, their state machine, and change streams.

The REST adapter (on the router) and the gRPC adapter call these methods and nothing else. The database is
the source of truth; this process is its only writer, so it keeps a write-through copy in memory and
answers reads (and the 10,000-endpoint list) without a query.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from services.common.capacity import concurrency_bounds
from services.common.deployments import Deployment, DeploymentStatus, EndpointRoutes, RouteTarget
from services.common.errors import AlreadyExists, Conflict, EndpointNotFound, Unavailable
from services.common.secret_box import Cipher, seal_plaintext
from services.control_plane import spec, spec_options, views
from services.control_plane.gateway_policy import external_target, gateway_policy
from services.control_plane.state import (
    IN_PROGRESS, NOT_READY, Observation, advance, deployed_configs, deployment_key, find_served_entity,
    is_external,
)
from services.control_plane.store import EndpointStore

if TYPE_CHECKING:  # handed in by __main__; the core never imports gRPC itself
    from services.control_plane.backends import ScalerClients

log = logging.getLogger(__name__)


class EndpointService:
    def __init__(self, store: EndpointStore, report_expiry_s: float = 10.0, clock=time.time,
                 scalers: "ScalerClients | None" = None, cipher: Cipher | None = None):
        self._store = store
        self._scalers = scalers
        self._cipher = cipher  # seals `*_plaintext` spec fields (provider keys) before they are stored
        # Which scaler runs (and keeps the logs of) each deployment, from its reports.
        self._log_sources: dict[str, str] = {}
        self._latest_scaler = ""
        self._clock = clock
        self._report_expiry_s = report_expiry_s
        self._endpoints: dict[str, dict] = {}
        self._reports: dict[str, tuple[Observation, float]] = {}
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._generation = 0

    async def start(self) -> None:
        for endpoint in await asyncio.to_thread(self._store.load_all):
            self._endpoints[endpoint["name"]] = endpoint
        log.info("loaded %d endpoints", len(self._endpoints))

    # ---- the serving-endpoint API ----

    async def create(self, body: object, caller: str) -> dict:
        request = spec.validate_create(body)
        request["config"] = seal_plaintext(request["config"], self._cipher)
        now_ms = self._now_ms()
        endpoint = {
            "id": secrets.token_hex(16),
            "name": request["name"],
            "creator": caller,
            "creation_timestamp": now_ms,
            "last_updated_timestamp": now_ms,
            "config": None,
            "pending_config": self._new_config(request["config"], 1, caller, now_ms),
            "state": {"ready": NOT_READY, "config_update": IN_PROGRESS},
            "failure": "",
            **{k: request[k] for k in ("tags", "ai_gateway", "email_notifications", "telemetry_config",
                                       "route_optimized", "description", "budget_policy_id")},
        }
        if spec.is_all_external(request["config"]):
            endpoint = advance(endpoint, self._observed(), now_ms)  # providers serve it: ready at once
        async with self._write_lock:
            if endpoint["name"] in self._endpoints:
                raise AlreadyExists(f"Endpoint with name '{endpoint['name']}' already exists")
            await asyncio.to_thread(self._store.insert, endpoint)
            self._endpoints[endpoint["name"]] = endpoint
        await self._notify()
        log.info("created endpoint %s", endpoint["name"])
        return views.detailed(endpoint, self._observed())

    async def get(self, name: str) -> dict:
        return views.detailed(self._require(name), self._observed())

    async def list(self) -> dict:
        return {"endpoints": [views.summary(e) for e in self._endpoints.values()]}

    async def update_config(self, name: str, body: object, caller: str) -> dict:
        config = seal_plaintext(spec.validate_config(body, "config"), self._cipher)
        async with self._write_lock:
            endpoint = self._require(name)
            if endpoint["state"]["config_update"] == IN_PROGRESS:
                raise Conflict(f"Endpoint '{name}' is already being updated; wait until its config_update is "
                               "NOT_UPDATING or UPDATE_FAILED")
            now_ms = self._now_ms()
            latest = max(c["config_version"] for c in (endpoint.get("config"), endpoint.get("pending_config")) if c)
            updated = {
                **endpoint,
                "pending_config": self._new_config(config, latest + 1, caller, now_ms),
                "state": {**endpoint["state"], "config_update": IN_PROGRESS},
                "failure": "",
                "last_updated_timestamp": now_ms,
            }
            if spec.is_all_external(config):
                updated = advance(updated, self._observed(), now_ms)  # providers serve it: swapped at once
            await asyncio.to_thread(self._store.update, updated)
            self._endpoints[name] = updated
        await self._notify()
        log.info("updating endpoint %s to config version %d", name, latest + 1)
        return views.detailed(updated, self._observed())

    async def delete(self, name: str) -> None:
        async with self._write_lock:
            endpoint = self._require(name)
            await asyncio.to_thread(self._store.delete, endpoint["id"])
            del self._endpoints[name]
            for config in (endpoint.get("config"), endpoint.get("pending_config")):
                for entity in (config or {}).get("served_entities", ()):
                    self._log_sources.pop(deployment_key(endpoint["id"], entity), None)
        await self._notify()
        log.info("deleted endpoint %s", name)

    async def patch_tags(self, name: str, body: object) -> dict:
        add, delete = spec_options.validate_tags_patch(body)
        endpoint = await self._modify(name, lambda e: {
            **e, "tags": spec_options.apply_tags_patch(e.get("tags", []), add, delete)})
        return {"tags": endpoint["tags"]}

    async def put_ai_gateway(self, name: str, body: object) -> dict:
        ai_gateway = spec_options.validate_ai_gateway(body, "request body")
        endpoint = await self._modify(name, lambda e: {**e, "ai_gateway": ai_gateway})
        return views.ai_gateway(endpoint)

    async def put_rate_limits(self, name: str, body: object) -> dict:
        limits = spec_options.validate_rate_limits_put(body)

        def change(endpoint: dict) -> dict:
            ai_gateway = {k: v for k, v in endpoint.get("ai_gateway", {}).items() if k != "rate_limits"}
            return {**endpoint, "ai_gateway": {**ai_gateway, **({"rate_limits": limits} if limits else {})}}

        await self._modify(name, change)
        return {"rate_limits": limits}

    async def update_notifications(self, name: str, body: object) -> dict:
        notifications = spec_options.validate_notifications_patch(body)
        endpoint = await self._modify(name, lambda e: {**e, "email_notifications": notifications})
        return {"name": endpoint["name"], "email_notifications": endpoint["email_notifications"]}

    async def patch_telemetry_config(self, name: str, body: object) -> dict:
        telemetry = spec_options.validate_telemetry_patch(body)
        endpoint = await self._modify(name, lambda e: {**e, "telemetry_config": telemetry})
        return views.detailed(endpoint, self._observed())

    async def served_model_logs(self, name: str, served_model_name: str, *, build: bool) -> dict:
        """{"logs": text}: what the served entity's replicas printed, read from the scaler that runs them."""
        endpoint = self._require(name)
        entity = find_served_entity(endpoint, served_model_name, prefer_pending=build)
        if entity is None:
            raise EndpointNotFound(f"Served model '{served_model_name}' does not exist in endpoint '{name}'")
        key = deployment_key(endpoint["id"], entity)
        target = self._log_sources.get(key) or self._latest_scaler
        if self._scalers is None or not target:
            raise Unavailable("No scaler has reported yet, so no replica logs can be read", retry_after_s=2)
        return {"logs": await self._scalers.replica_logs(target, key, build=build)}

    # ---- internal: the scaler and the router ----

    def deployments(self) -> list[Deployment]:
        """One Deployment per served entity that should be running now."""
        out: dict[str, Deployment] = {}
        for endpoint in self._endpoints.values():
            for config in deployed_configs(endpoint):
                is_serving = config is endpoint.get("config")
                for entity in config["served_entities"]:
                    if is_external(entity):
                        continue  # its provider serves it: no replicas
                    key = deployment_key(endpoint["id"], entity)
                    if key in out:  # in the serving config and again in the pending one
                        continue
                    low, high = concurrency_bounds(entity)
                    out[key] = Deployment(key, endpoint["name"], entity["name"], spec.model_uri(entity), low, high,
                                          bool(entity.get("scale_to_zero_enabled")),
                                          dict(entity.get("environment_vars", {})),
                                          workload_type=entity.get("workload_type", "CPU"), is_serving=is_serving)
        return list(out.values())

    async def report(self, statuses: list[DeploymentStatus], scaler_target: str = "") -> None:
        """Takes the scaler's observations and moves every endpoint's state machine on."""
        routes_before = self.routing_table()
        now = self._clock()
        if scaler_target:
            self._latest_scaler = scaler_target
            self._log_sources.update({s.key: scaler_target for s in statuses})
        self._reports.update({
            s.key: (Observation(s.ready_addresses, s.starting_replicas, s.failure, s.desired_replicas), now)
            for s in statuses})
        observed = self._observed()
        changed = False
        async with self._write_lock:
            for name, endpoint in list(self._endpoints.items()):
                moved = advance(endpoint, observed, self._now_ms())
                if moved is not endpoint:
                    await asyncio.to_thread(self._store.update, moved)
                    self._endpoints[name] = moved
                    log.info("endpoint %s is now %s", name, moved["state"])
                    changed = True
        if changed or self.routing_table() != routes_before:
            await self._notify()

    def routing_table(self) -> list[EndpointRoutes]:
        observed = self._observed()
        table = []
        for endpoint in self._endpoints.values():
            config = endpoint.get("config")
            if not config:  # still being created: known to routers, but nothing to route to yet
                table.append(EndpointRoutes(endpoint["name"], endpoint["id"], ()))
                continue
            entities = {e["name"]: e for e in config["served_entities"]}
            routes = []
            for route in config["traffic_config"]["routes"]:
                entity = entities[route["served_entity_name"]]
                key = deployment_key(endpoint["id"], entity)
                addresses = observed.get(key, Observation()).ready_addresses
                external = external_target(entity["external_model"]) if is_external(entity) else None
                routes.append(RouteTarget(route["served_entity_name"], route["traffic_percentage"], key, addresses,
                                          external))
            table.append(EndpointRoutes(endpoint["name"], endpoint["id"], tuple(routes),
                                        gateway_policy(endpoint, config)))
        return table

    async def watch(self) -> AsyncIterator[list[EndpointRoutes]]:
        """The routing table now, then again after every change."""
        seen = -1
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self._generation != seen)
                seen = self._generation
            yield self.routing_table()

    # ---- helpers ----

    def _require(self, name: str) -> dict:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise EndpointNotFound(f"Endpoint with name '{name}' does not exist")
        return endpoint

    async def _modify(self, name: str, change: Callable[[dict], dict]) -> dict:
        """Applies `change` to the stored endpoint (spec options only: no replica starts or stops)."""
        async with self._write_lock:
            routes_before = self.routing_table()
            updated = {**change(self._require(name)), "last_updated_timestamp": self._now_ms()}
            await asyncio.to_thread(self._store.update, updated)
            self._endpoints[name] = updated
        if self.routing_table() != routes_before:  # e.g. new rate limits: routers enforce them at once
            await self._notify()
        return updated

    def _observed(self) -> dict[str, Observation]:
        fresh_after = self._clock() - self._report_expiry_s
        return {key: obs for key, (obs, at) in self._reports.items() if at >= fresh_after}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @staticmethod
    def _new_config(config: dict, version: int, caller: str, now_ms: int) -> dict:
        entities = [{**e, "creator": caller, "creation_timestamp": now_ms} for e in config["served_entities"]]
        return {**config, "served_entities": entities, "config_version": version, "start_time": now_ms}

    async def _notify(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

