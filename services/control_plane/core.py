"""The control plane's one core: serving-endpoint specs, their state machine, and change streams.

The management API (operations.py) and the internal gRPC API (grpc_api.py) call these methods and nothing
else. The database is the source of truth; this process is its only writer, so it keeps a write-through
copy in memory and answers reads (and the 10,000-endpoint list) without a query.

Every method takes the caller's bearer token and decides here who may do what: the serving-endpoint API
needs a user or service principal with the endpoint permission it names (an endpoint the caller may not
even view is reported as not existing); the internal calls need Podium's internal service credential.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import orjson

from services.common.capacity import concurrency_bounds
from services.common.egress import EgressPolicy
from services.common.deployments import Deployment, DeploymentStatus, EndpointRoutes, RouteTarget
from services.common.errors import AlreadyExists, Conflict, EndpointNotFound, Unavailable
from services.common.principals import CAN_MANAGE, CAN_VIEW, GROUP, Principal, effective_level, require_level
from services.common.secret_box import Cipher, reseal, seal_plaintext
from services.control_plane import (
    model_tasks, permissions, quotas, spec, spec_external, spec_options, spec_shadow, views,
)
from services.control_plane.config_versions import new_config
from services.control_plane.gateway_policy import external_target, gateway_policy
from services.control_plane.grants import GrantsService, check_writer
from services.control_plane.identity import IdentityService
from services.control_plane.rendered_list import RenderedList
from services.control_plane.state import (
    IN_PROGRESS, NOT_READY, Observation, advance, deployed_configs, deployment_key, find_served_entity,
    entities_of_deployment, is_external, routed_entities, with_rollout,
)
from services.control_plane.store import EndpointStore

if TYPE_CHECKING:  # handed in by __main__; the core never imports gRPC itself
    from services.control_plane.backends import ScalerClients

log = logging.getLogger(__name__)


class EndpointService:
    def __init__(self, store: EndpointStore, identity: IdentityService, report_expiry_s: float = 10.0,
                 clock=time.time, scalers: "ScalerClients | None" = None, cipher: Cipher | None = None,
                 quotas: quotas.Quotas = quotas.Quotas(), egress: EgressPolicy = EgressPolicy(),
                 grants: GrantsService | None = None, secrets=None, tasks: model_tasks.ModelTasks | None = None):
        self._store, self._grants, self._secrets = store, grants, secrets  # model grants, secret scope ACLs
        self._identity, self._scalers, self._tasks = identity, scalers, tasks or model_tasks.ModelTasks("", "")
        self._cipher = cipher  # seals `*_plaintext` spec fields (provider keys) before they are stored
        self._quotas, self._egress = quotas, egress   # per-user quotas; which provider URLs specs may name
        # Which scaler runs (and keeps the logs of) each deployment, from its reports.
        self._log_sources: dict[str, str] = {}
        self._latest_scaler = ""
        self._clock = clock
        self._report_expiry_s = report_expiry_s
        self._endpoints: dict[str, dict] = {}
        self._listed = RenderedList()   # told of every write to _endpoints (_put, _drop)
        self._reports: dict[str, tuple[Observation, float]] = {}
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._generation = 0

    async def start(self) -> None:
        resealed = 0
        for endpoint in await asyncio.to_thread(self._store.load_all):
            if self._cipher is not None:   # after `podium keys rotate`: stored credentials move to the new key
                moved = await asyncio.to_thread(reseal, endpoint, self._cipher)
                if moved is not endpoint:
                    await asyncio.to_thread(self._store.update, moved)
                    endpoint, resealed = moved, resealed + 1
            self._put(endpoint)
        log.info("loaded %d endpoints (%d resealed under the active master key)", len(self._endpoints), resealed)

    # ---- the serving-endpoint API ----

    async def create(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        request = spec.validate_create(body)
        await check_writer(caller, request["config"], self._grants, self._secrets)
        request["config"] = seal_plaintext(spec_external.check_egress(request["config"], caller, self._egress),
                                           self._cipher)
        now_ms = self._now_ms()
        endpoint = {
            "id": secrets.token_hex(16),
            "name": request["name"],
            "creator": caller.name,
            "acl": permissions.creator_acl(caller.id),
            "creation_timestamp": now_ms,
            "last_updated_timestamp": now_ms,
            "config": None,
            "pending_config": new_config(await self._tasks.tag(request["config"]), 1, caller, now_ms,
                                         request["name"], self._endpoints),
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
            quotas.check_quotas(caller, self._endpoints.values(), None, request["config"], self._quotas)
            await asyncio.to_thread(self._store.insert, endpoint)
            self._put(endpoint)
        await self._notify()
        log.info("created endpoint %s", endpoint["name"])
        return views.detailed(endpoint, self._observed(), CAN_MANAGE)

    async def get(self, token: str, name: str) -> dict:
        endpoint, level, _ = await self.authorized(token, name, CAN_VIEW)
        return views.detailed(endpoint, self._observed(), level)

    async def list(self, token: str) -> dict:
        """Only the endpoints the caller may view."""
        return orjson.loads(await self.list_json(token))

    async def list_json(self, token: str) -> bytes:
        """The list answer, rendered (once per change: see RenderedList)."""
        caller = await self._identity.authenticate_person(token)
        if effective_level(caller, ()) == CAN_MANAGE:   # an admin sees every endpoint (a service none)
            return self._listed.render(self._endpoints, None)
        return self._listed.render(self._endpoints, set() if caller.is_service else {caller.id, *caller.group_ids})

    async def update_config(self, token: str, name: str, body: object) -> dict:
        caller = (await self.authorized(token, name, CAN_MANAGE))[2]
        config = await self._tasks.tag(spec.validate_config(body, "config"))   # `task`: the model's (views.py)
        await check_writer(caller, config, self._grants, self._secrets)
        config = seal_plaintext(spec_external.check_egress(config, caller, self._egress), self._cipher)
        async with self._write_lock:
            endpoint = spec_options.check_budget_prices(self._require(name), config)
            quotas.check_quotas(caller, self._endpoints.values(), endpoint["id"], config, self._quotas)
            if endpoint["state"]["config_update"] == IN_PROGRESS:
                raise Conflict(f"Endpoint '{name}' is already being updated; wait until its config_update is "
                               "NOT_UPDATING or UPDATE_FAILED")
            now_ms = self._now_ms()
            latest = max(c["config_version"] for c in (endpoint.get("config"), endpoint.get("pending_config")) if c)
            updated = with_rollout({   # with a rollout plan, the configs will share the traffic in steps
                **endpoint,
                "pending_config": new_config(config, latest + 1, caller, now_ms, name, self._endpoints),
                "state": {**endpoint["state"], "config_update": IN_PROGRESS},
                "failure": "",
                "last_updated_timestamp": now_ms,
            }, now_ms)
            if spec.is_all_external(config):
                updated = advance(updated, self._observed(), now_ms)  # providers serve it: swapped at once
            await asyncio.to_thread(self._store.update, updated)
            self._put(updated)
        await self._notify()
        log.info("updating endpoint %s to config version %d", name, latest + 1)
        return views.detailed(updated, self._observed(), CAN_MANAGE)

    async def delete(self, token: str, name: str) -> dict:
        """{}: the Databricks answer (mlflow's delete_endpoint needs a JSON body)."""
        await self.authorized(token, name, CAN_MANAGE)
        async with self._write_lock:
            endpoint = self._require(name)
            await asyncio.to_thread(self._store.delete, endpoint["id"])
            self._drop(name)
            for config in (endpoint.get("config"), endpoint.get("pending_config")):
                for entity in (config or {}).get("served_entities", ()):
                    self._log_sources.pop(deployment_key(endpoint["id"], entity), None)
        await self._notify()
        log.info("deleted endpoint %s", name)
        return {}

    async def patch_tags(self, token: str, name: str, body: object) -> dict:
        await self.authorized(token, name, CAN_MANAGE)
        add, delete = spec_options.validate_tags_patch(body)
        endpoint = await self.modify(name, lambda e: {
            **e, "tags": spec_options.apply_tags_patch(e.get("tags", []), add, delete)})
        return {"tags": endpoint["tags"]}

    async def put_ai_gateway(self, token: str, name: str, body: object) -> dict:
        await self.authorized(token, name, CAN_MANAGE)
        ai_gateway = spec_options.validate_ai_gateway(body, "request body")
        endpoint = await self.modify(name, lambda e: spec_options.check_budget_prices({**e, "ai_gateway": ai_gateway}))
        return views.ai_gateway(endpoint)

    async def put_rate_limits(self, token: str, name: str, body: object) -> dict:
        await self.authorized(token, name, CAN_MANAGE)
        limits = spec_options.validate_rate_limits_put(body)

        def change(endpoint: dict) -> dict:
            ai_gateway = {k: v for k, v in endpoint.get("ai_gateway", {}).items() if k != "rate_limits"}
            return {**endpoint, "ai_gateway": {**ai_gateway, **({"rate_limits": limits} if limits else {})}}

        await self.modify(name, change)
        return {"rate_limits": limits}

    async def update_notifications(self, token: str, name: str, body: object) -> dict:
        await self.authorized(token, name, CAN_MANAGE)
        notifications = spec_options.validate_notifications_patch(body)
        endpoint = await self.modify(name, lambda e: {**e, "email_notifications": notifications})
        return {"name": endpoint["name"], "email_notifications": endpoint["email_notifications"]}

    async def patch_telemetry_config(self, token: str, name: str, body: object) -> dict:
        await self.authorized(token, name, CAN_MANAGE)
        telemetry = spec_options.validate_telemetry_patch(body)
        endpoint = await self.modify(name, lambda e: {**e, "telemetry_config": telemetry})
        return views.detailed(endpoint, self._observed(), CAN_MANAGE)

    async def served_model_logs(self, token: str, name: str, served_model_name: str, *, build: bool) -> dict:
        """{"logs": text}: what the served entity's replicas printed, read from the scaler that runs them.
        Logs may show what the model was sent: CAN_MANAGE only."""
        endpoint = (await self.authorized(token, name, CAN_MANAGE))[0]
        entity = find_served_entity(endpoint, served_model_name, prefer_pending=build)
        if entity is None:
            raise EndpointNotFound(f"Served model '{served_model_name}' does not exist in endpoint '{name}'")
        key = deployment_key(endpoint["id"], entity)
        target = self._log_sources.get(key) or self._latest_scaler
        if self._scalers is None or not target:
            raise Unavailable("No scaler has reported yet, so no replica logs can be read", retry_after_s=2)
        return {"logs": await self._scalers.replica_logs(target, key, build=build)}

    # ---- permissions: /api/2.0/permissions/serving-endpoints/{id} ----

    async def get_permissions(self, token: str, endpoint_id: str) -> dict:
        caller = await self._identity.authenticate_person(token)
        endpoint = self._require_id(endpoint_id, caller, CAN_VIEW)
        return permissions.render(endpoint["id"], endpoint.get("acl", []), self._describe)

    async def permission_levels(self, token: str, endpoint_id: str) -> dict:
        caller = await self._identity.authenticate_person(token)
        self._require_id(endpoint_id, caller, CAN_VIEW)
        return permissions.permission_levels()

    async def set_permissions(self, token: str, endpoint_id: str, body: object, *, replace: bool) -> dict:
        """PUT replaces the direct grants; PATCH changes those of the principals it names."""
        caller = await self._identity.authenticate_person(token)
        self._require_id(endpoint_id, caller, CAN_MANAGE)
        grants = permissions.parse_request(body, self._identity.find)
        async with self._write_lock:
            endpoint = self._require_id(endpoint_id, caller, CAN_MANAGE)
            acl = grants if replace else permissions.merge(endpoint.get("acl", []), grants)
            updated = {**endpoint, "acl": acl}
            await asyncio.to_thread(self._store.update, updated)
            self._put(updated)
        await self._notify()  # routers take the new grants from the routing table
        log.info("permissions of endpoint %s changed", endpoint["name"])
        return permissions.render(endpoint_id, acl, self._describe)

    # ---- internal: the scaler and the router (Podium's service credential only) ----

    def deployments(self, token: str) -> list[Deployment]:
        """One Deployment per served entity that should be running now."""
        self._identity.require_service(token)
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
                                          workload_type=entity.get("workload_type", "CPU"), is_serving=is_serving,
                                          max_batch_size=entity.get("max_batch_size", 0),
                                          max_batch_wait_ms=entity.get("max_batch_wait_ms", 0.0))
        return list(out.values())

    async def report(self, token: str, statuses: list[DeploymentStatus], scaler_target: str = "") -> None:
        """Takes the scaler's observations and moves every endpoint's state machine on."""
        self._identity.require_service(token)
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
                    self._put(moved)
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
                table.append(EndpointRoutes(endpoint["name"], endpoint["id"], (), acl=permissions.acl_pairs(endpoint)))
                continue
            routes = []
            for entity, percentage, entity_config in routed_entities(endpoint):   # both configs in a rollout
                key = deployment_key(endpoint["id"], entity)
                external = external_target(entity["external_model"], entity_config) if is_external(entity) else None
                routes.append(RouteTarget(entity["name"], percentage, key, observed.get(key, Observation()).ready_addresses,
                                          external, *spec_shadow.route_fields(entity)))
            table.append(EndpointRoutes(endpoint["name"], endpoint["id"], tuple(routes),
                                        gateway_policy(endpoint, config), permissions.acl_pairs(endpoint)))
        return table

    async def watch(self, token: str) -> AsyncIterator[list[EndpointRoutes]]:
        """The routing table now, then again after every change (with each endpoint's grants)."""
        self._identity.require_service(token)
        seen = -1
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self._generation != seen)
                seen = self._generation
            yield self.routing_table()

    def written_configs(self) -> list[tuple[str, str, dict]]:
        """(endpoint name, writer id, config) of every live config: the secrets core checks its writer's READ."""
        return [(e["name"], c.get("writer_id") or self._identity.find("user", e["creator"]) or "", c)
                for e in self._endpoints.values() for c in (e.get("config"), e.get("pending_config")) if c]

    def deployment_entities(self, key: str) -> list[tuple[str, dict]]:
        return entities_of_deployment(self._endpoints.values(), key, self._identity.find)

    def endpoints(self) -> dict[str, dict]:
        return dict(self._endpoints)   # by name: a copy, so a caller's iteration never sees a write

    # ---- helpers ----

    async def authorized(self, token: str, name: str, needed: str) -> tuple[dict, str, Principal]:
        """The endpoint, the caller's level on it and the caller, once it holds `needed` (404 when it may not
        even view it, as for an unknown name; 403 when it may view it but needs more)."""
        caller = await self._identity.authenticate_person(token)
        endpoint = self._require(name)
        return endpoint, require_level(caller, permissions.acl_pairs(endpoint), needed, name), caller

    def _require_id(self, endpoint_id: str, caller: Principal, needed: str) -> dict:
        if (endpoint := next((e for e in self._endpoints.values() if e["id"] == endpoint_id), None)) is None:
            raise EndpointNotFound(f"Serving endpoint with id '{endpoint_id}' does not exist")
        try:
            require_level(caller, permissions.acl_pairs(endpoint), needed, endpoint["name"])
        except EndpointNotFound:
            raise EndpointNotFound(f"Serving endpoint with id '{endpoint_id}' does not exist") from None
        return endpoint

    def _describe(self, principal_id: str) -> dict | None:
        if (record := self._identity.principals.get(principal_id)) is None:
            return None
        return {"kind": record["kind"], "name": record["name"],
                "display_name": record.get("displayName", "") if record["kind"] != GROUP else ""}

    def _require(self, name: str) -> dict:
        if (endpoint := self._endpoints.get(name)) is None:
            raise EndpointNotFound(f"Endpoint with name '{name}' does not exist")
        return endpoint

    async def modify(self, name: str, change: Callable[[dict], dict]) -> dict:
        """Applies `change` to the stored endpoint (spec options; rollouts.py and aliases.py move updates)."""
        async with self._write_lock:
            routes_before = self.routing_table()
            updated = {**change(self._require(name)), "last_updated_timestamp": self._now_ms()}
            await asyncio.to_thread(self._store.update, updated)
            self._put(updated)
        if self.routing_table() != routes_before:  # e.g. new rate limits: routers enforce them at once
            await self._notify()
        return updated

    def _put(self, endpoint: dict) -> None:
        """Every write to the in-memory endpoints goes through here or _drop (the list cache's version)."""
        self._endpoints[endpoint["name"]] = endpoint
        self._listed.changed()

    def _drop(self, name: str) -> None:
        del self._endpoints[name]
        self._listed.changed()

    def _observed(self) -> dict[str, Observation]:
        fresh_after = self._clock() - self._report_expiry_s
        return {key: obs for key, (obs, at) in self._reports.items() if at >= fresh_after}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _notify(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

