"""Endpoints that follow a registry alias: a served entity naming `entity_version: "champion"` (or
`"@champion"`) serves the version the alias points to, pinned in `resolved_version` (shown with the entity),
and moves with it.

Pinned when a config is written (create, update: the alias is read from the registry then), so every
replica of one deployment loads the same version, whatever the alias does meanwhile. The follower then
reads every followed alias each `alias_interval_s`; when one moved, it updates the endpoint to a copy of
its serving config pinned to the new version: with the config's `rollout_plan` that is a canary rollout
(docs/progressive-delivery.md), without one a plain update. A version whose update failed or was rolled back
is not tried again until the alias moves on.

MLflow's client is blocking: every read runs on a small thread pool under a deadline. A registry that cannot
be read leaves the entity unpinned (its replicas load the alias as it is when they start) or, for the
follower, the endpoint where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from services.control_plane.spec import MODEL_VERSION
from services.control_plane.state import IN_PROGRESS, UPDATE_FAILED, with_rollout

if TYPE_CHECKING:  # handed in by __main__
    from services.control_plane.core import EndpointService

log = logging.getLogger(__name__)


class AliasResolver:
    def __init__(self, registry_uri: str, tracking_uri: str = "", timeout_s: float = 10.0):
        self._registry_uri = registry_uri
        self._tracking_uri = tracking_uri or registry_uri
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alias")

    async def resolve(self, name: str, alias: str) -> str | None:
        """The version `alias` of model `name` points to now; None when the registry cannot say."""
        if not self._registry_uri:
            return None
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, self._read, name, alias), self._timeout_s)
        except Exception as exc:   # noqa: BLE001 - unpinned or unmoved: the endpoint stays as it is
            log.info("cannot read alias %s of %s: %s", alias, name, type(exc).__name__)
            return None

    def _read(self, name: str, alias: str) -> str:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self._tracking_uri, registry_uri=self._registry_uri)
        return str(client.get_model_version_by_alias(name, alias).version)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def is_alias(entity: dict) -> bool:
    version = str(entity.get("entity_version") or entity.get("model_version") or "")
    return bool(version) and entity.get("external_model") is None and not MODEL_VERSION.fullmatch(version)


async def pin_body(resolver: AliasResolver, body: object, *, is_create: bool) -> object:
    """A create or update-config request body whose alias-named entities carry `resolved_version` (what the
    registry says now; a caller's own `resolved_version` is never taken). Anything not shaped as expected
    is left for the spec's validation to refuse."""
    config = body.get("config") if is_create and isinstance(body, dict) else body
    if not isinstance(config, dict):
        return body
    pinned = dict(config)
    for field in ("served_entities", "served_models"):
        entities = config.get(field)
        if isinstance(entities, list):
            pinned[field] = [await _pin(resolver, e) if isinstance(e, dict) else e for e in entities]
    return {**body, "config": pinned} if is_create else pinned


async def _pin(resolver: AliasResolver, entity: dict) -> dict:
    entity = {k: v for k, v in entity.items() if k != "resolved_version"}
    if is_alias(entity):
        name = entity.get("entity_name") or entity.get("model_name")
        alias = str(entity.get("entity_version") or entity.get("model_version")).lstrip("@")
        version = await resolver.resolve(name, alias) if isinstance(name, str) and name else None
        if version:
            entity["resolved_version"] = version
    return entity


def followed_config(endpoint: dict, resolved: dict[tuple[str, str], str], now_ms: int) -> dict | None:
    """The config to update the endpoint to because an alias it follows moved, or None: nothing moved, an
    update is under way, or the move's update already failed."""
    config = endpoint.get("config")
    if not config or endpoint["state"]["config_update"] == IN_PROGRESS:
        return None
    entities, moved = [], False
    for entity in config["served_entities"]:
        version = resolved.get((entity.get("entity_name", ""), entity.get("entity_version", ""))) \
            if is_alias(entity) else None
        if version and version != entity.get("resolved_version"):
            entity, moved = {**entity, "resolved_version": version, "creation_timestamp": now_ms}, True
        entities.append(entity)
    if not moved:
        return None
    failed = endpoint.get("pending_config") if endpoint["state"]["config_update"] == UPDATE_FAILED else None
    if failed and [e.get("resolved_version") for e in failed["served_entities"]] == \
            [e.get("resolved_version") for e in entities]:
        return None   # that very move failed (or was rolled back): wait for the alias to move on
    latest = max(c["config_version"] for c in (config, endpoint.get("pending_config")) if c)
    return {**config, "served_entities": entities, "config_version": latest + 1, "start_time": now_ms}


class AliasFollower:
    def __init__(self, endpoints: "EndpointService", resolver: AliasResolver, *, interval_s: float = 30.0,
                 clock=time.time):
        self._endpoints = endpoints
        self._resolver = resolver
        self._interval_s = interval_s
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("alias pass failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    async def tick(self) -> None:
        """Reads every alias a serving config follows once, and updates the endpoints whose alias moved."""
        wanted = {(e["entity_name"], e["entity_version"]) for endpoint in list(self._endpoints.endpoints().values())
                  for e in (endpoint.get("config") or {}).get("served_entities", ()) if is_alias(e)}
        resolved = {}
        for name, alias in sorted(wanted):
            version = await self._resolver.resolve(name, alias)
            if version:
                resolved[(name, alias)] = version
        for name in [n for n, e in self._endpoints.endpoints().items() if e.get("config")]:
            await self._follow(name, resolved)

    async def _follow(self, name: str, resolved: dict[tuple[str, str], str]) -> None:
        now_ms = int(self._clock() * 1000)
        started = None

        def change(endpoint: dict) -> dict:
            nonlocal started
            config = followed_config(endpoint, resolved, now_ms)
            if config is None:
                return endpoint
            started = config
            updated = {**endpoint, "pending_config": config, "failure": "",
                       "state": {**endpoint["state"], "config_update": IN_PROGRESS}}
            return with_rollout(updated, now_ms)

        if name in self._endpoints.endpoints() and followed_config(self._endpoints.endpoints()[name], resolved,
                                                                  now_ms) is not None:
            await self._endpoints.modify(name, change)
        if started is not None:
            versions = ", ".join(f"{e['entity_name']}@{e['entity_version']} → {e['resolved_version']}"
                                 for e in started["served_entities"] if e.get("resolved_version"))
            log.info("endpoint %s follows %s: config version %d%s", name, versions, started["config_version"],
                     " (rollout)" if started.get("rollout_plan") else "")
