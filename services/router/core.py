"""The router's one core: where a query is decided, and where a management call is authenticated and sent on.
REST and gRPC both call it.

Every method takes the caller's bearer credential and authenticates it first (through the TokenCache:
no control-plane round trip while the answer is fresh). Queries, model descriptions, metrics and the AI
gateway's records are authorized here, against the grants that ride in the routing table; management calls
(`manage`: serving endpoints, identity, permissions, secrets) go to the control plane with the caller's
credential, and its cores authorize them. Rate limits and usage records count the authenticated caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import (
    DeadlineExceeded, EndpointNotFound, InvalidParameter, PodiumError, ReplicaUnreachable, Unavailable,
)
from services.common import tracing
from services.common.request_context import traceparent_var, request_id_var
from services.common.principals import CAN_MANAGE, CAN_QUERY, CAN_VIEW, Principal, require_level, require_unscoped
from services.common.tensors import ModelMetadata
from services.router.admission import Admission, LoadTracker, has_untried
from services.router.auth import TokenCache
from services.router.openapi import build_document
from services.router.policy.replica_choice import pick_replica
from services.router.policy.traffic import pick_served_entity
from services.router.results import CLIENT_CLOSED, QueryResult, StreamRequired, model_error
from services.router import agent_wire

if TYPE_CHECKING:  # the core is handed its backends; it never imports gRPC itself
    from services.common.control_plane_client import ControlPlaneClient
    from services.router.ai_gateway import AiGateway
    from services.router.backends import RoutingTableFollower, WorkerPool
    from services.router.metrics import EndpointMetrics
    from services.router.openapi import SignatureReader
    from services.router.registry import ModelRegistry
    from services.router.shadow import ShadowMirror

log = logging.getLogger(__name__)

ROUTING_CATCH_UP_S = 2.0  # how long a create waits for this router's routing table to show the endpoint


class WireProtocol(enum.StrEnum):
    """How a query's bytes are to be scored: the PredictStream item method, unparsed by the router core."""

    DATABRICKS = "databricks"            # MLflow scoring JSON (invocations), a PREDICT item
    OPEN_INFERENCE = "open_inference"    # a serialized worker InferRequest (OIP v2), an INFER item


@dataclass(frozen=True)
class ModelDescription:
    """An endpoint as a model: its served entities (the model's versions) and one entity's signature."""

    endpoint_name: str
    served_entity_names: tuple[str, ...]
    served_entity_name: str
    metadata: ModelMetadata


class Gateway:
    def __init__(self, control_plane: "ControlPlaneClient", routing: "RoutingTableFollower", pool: "WorkerPool",
                 auth: TokenCache, *, forward_timeout_s: float, metrics: "EndpointMetrics",
                 signatures: "SignatureReader", rng: random.Random | None = None,
                 registry: "ModelRegistry | None" = None, ai_gateway: "AiGateway | None" = None,
                 admission: Admission | None = None, shadow: "ShadowMirror | None" = None):
        self._control_plane = control_plane
        self._auth = auth
        self._registry = registry
        self._routing = routing
        self._pool = pool
        self._forward_timeout_s = forward_timeout_s
        self._metrics = metrics
        self._signatures = signatures
        self._rng = rng or random.Random()
        self._metadata: dict[str, ModelMetadata] = {}   # by deployment key: fixed while a deployment lives
        # Deployments whose model streams (their replicas said so): only their queries are read for "stream".
        self._streaming: set[str] = set()
        self._ai_gateway, self._shadow = ai_gateway, shadow   # shadow: copies of queries (shadow.py)
        # Load per served entity (for the scaler) and the queue where requests wait for a replica.
        self._admission = admission or Admission(LoadTracker(), queue_limit=1000, timeout_s=60.0)
        self.load = self._admission.tracker

    # ---- data plane ----

    async def authenticate(self, token: str) -> Principal:
        """Who is calling (Unauthenticated otherwise): for answers that concern no endpoint, e.g. OIP's
        server metadata and health."""
        return await self._auth.caller(token)

    async def query(self, token: str, endpoint_name: str, body: bytes, content_type: str, *,
                    served_entity_name: str | None = None,
                    protocol: WireProtocol = WireProtocol.DATABRICKS, task: str = "",
                    payload: dict | None = None) -> QueryResult:
        """Forwards the caller's bytes to a replica of the served entity the traffic split picks (or of the
        one named), over its PredictStream. Both protocols take this one path, and every answer
        (or error) is counted in the endpoint's metrics. Endpoints with external models, rate limits or
        inference tables (and the OpenAI-style paths, which set `task` and the parsed `payload`) go through
        the AI gateway; the others keep the plain bytes pass-through."""
        # Unknown endpoints and refused callers are not counted: no series per typo, no noise from strangers.
        arrived = time.monotonic()
        with tracing.server_span("router.query", traceparent_var.get(), {"podium.endpoint_name": endpoint_name}):
            with tracing.span("router.auth"):
                endpoint, caller = await self._authorized(token, endpoint_name, CAN_QUERY)
            counted_as, status, error_code = "", 500, "INTERNAL_ERROR"
            try:
                with tracing.span("router.route"):
                    route = self._route(endpoint, served_entity_name)
                counted_as = route.served_entity_name
                if task and (endpoint.gateway is None or not endpoint.gateway.is_external):
                    # An OpenAI-style path on a generative model: the model's own request shape, checked
                    body, task = agent_wire.model_request(
                        endpoint_name, task, (await self._deployment_metadata(endpoint_name, route)).task,
                        payload or {}), ""
                with self.load.track(route.deployment_key):   # load for the scaler (never a Redis call)
                    if task or endpoint.gateway is not None:
                        # A query naming its served entity is answered by that one: it never falls back.
                        pinned = dataclasses.replace(endpoint, routes=(route,)) if served_entity_name else endpoint
                        result = await self._query_ai_gateway(pinned, route, body, content_type, protocol, caller,
                                                              task, payload, token)
                    else:
                        result = await self._forward(endpoint_name, route, body, content_type, protocol)
                    if self._shadow is not None and protocol is WireProtocol.DATABRICKS:   # judged as the caller
                        self._shadow.offer(endpoint, body, content_type, result, live_key=route.deployment_key,
                                           ask=lambda judge, asked: self.query(token, judge, asked, "application/json"))
                status = 200
            except PodiumError as exc:
                status, error_code = exc.http_status, exc.code
                raise
            except asyncio.CancelledError:
                status, error_code = CLIENT_CLOSED, "CANCELLED"
                raise
            finally:
                elapsed_ms = (time.monotonic() - arrived) * 1000
                self._metrics.observe(endpoint_name, counted_as, status, elapsed_ms, error_code,
                                      deployment_key=route.deployment_key if counted_as else "")
        # Podium's own share of the answer's time: everything but the model's (worker's or provider's) time.
        overhead_ms = None if result.model_ms is None else max(0.0, elapsed_ms - result.model_ms)
        if overhead_ms is not None:
            self._metrics.observe_overhead(overhead_ms)
        return dataclasses.replace(result, request_id=request_id_var.get() or result.request_id,
                                   overhead_ms=overhead_ms)

    async def query_openai(self, token: str, task: str, body: bytes, payload: dict) -> QueryResult:
        """The OpenAI-style paths: the endpoint is named by the body's `model`."""
        await self._auth.caller(token)
        name = agent_wire.endpoint_named(payload)   # refuses a missing name, and Databricks Apps (`apps/<name>`)
        return await self.query(token, name, body, "application/json", task=task, payload=payload)

    async def _query_ai_gateway(self, endpoint: EndpointRoutes, route: RouteTarget, body: bytes, content_type: str,
                                protocol: WireProtocol, caller: Principal, task: str,
                                payload: dict | None, token: str) -> QueryResult:
        if self._ai_gateway is None:
            raise Unavailable("this router has no AI gateway (external models, rate limits, inference tables)")
        rules = endpoint.gateway   # guardrails read JSON text: OIP's binary tensors never reach them
        if protocol is not WireProtocol.DATABRICKS and rules is not None and (rules.is_external or rules.guardrails):
            raise InvalidParameter(f"Endpoint '{endpoint.name}' serves an external model or has guardrails: query it "
                                   "with the Databricks or OpenAI-style API, not the Open Inference Protocol")
        return await self._ai_gateway.query(
            endpoint, route, body, payload, caller, task,
            lambda target, sent: self._forward(endpoint.name, target, sent, content_type, protocol),
            lambda guard, judged: self.query(token, guard, judged, "application/json"),   # as the caller
            describe=lambda target: self._deployment_metadata(endpoint.name, target))

    def _route(self, endpoint: EndpointRoutes, served_entity_name: str | None) -> RouteTarget:
        if served_entity_name is None:
            route = pick_served_entity(endpoint.routes, self._rng.random())
        else:
            route = self._served_entity(endpoint, served_entity_name)
        if route is None:
            raise Unavailable(f"Endpoint '{endpoint.name}' is not ready yet", retry_after_s=5)
        return route

    def _reroute(self, endpoint_name: str, route: RouteTarget) -> RouteTarget:
        """The same served entity in the endpoint's new config if it is still there, else the traffic split's."""
        endpoint = self._endpoint(endpoint_name)
        same = next((r for r in endpoint.routes if r.served_entity_name == route.served_entity_name), None)
        return same or self._route(endpoint, None)

    async def _forward(self, endpoint_name: str, route: RouteTarget, body: bytes, content_type: str,
                       protocol: WireProtocol) -> QueryResult:
        """Sends the request to the less loaded of two ready replicas (power of two choices).

        A replica that fails at the transport level is ejected (WorkerPool.eject: no more requests from this
        router until the routing table drops it) and the request goes to another: freely if it never left
        this router, once only if the replica may have been running it (a request that crashes its replica
        must not crash them all). Attempts share one deadline (forward_timeout_s from the first). With no
        replica to try, the request waits in the admission queue for one, up to the queue's deadline."""
        tried: set[str] = set()
        deadline: float | None = None
        forward_deadline: float | None = None
        resent = False
        streams = route.deployment_key in self._streaming and protocol is WireProtocol.DATABRICKS and \
            agent_wire.asks_stream(body)
        while True:
            addresses = self._routing.replica_addresses(route.deployment_key)
            if addresses is None:  # the config changed while this request waited: take the new one
                route = self._reroute(endpoint_name, route)
                continue
            untried = [a for a in addresses if a not in tried]
            address = pick_replica([a for a in untried if not self._pool.is_ejected(a)] or untried,
                                   self._pool.in_flight, self._rng.randint)
            if address is None:
                deadline = deadline or self._admission.deadline()
                with tracing.span("router.queue"):   # waiting for capacity is its own span
                    await self._admission.wait(route.deployment_key, has_untried(self._routing, route, tried),
                                               deadline)
                continue
            tried.add(address)
            forward_deadline = forward_deadline or time.monotonic() + self._forward_timeout_s
            timeout_s = forward_deadline - time.monotonic()
            if timeout_s <= 0:
                raise DeadlineExceeded(f"the model did not answer within {self._forward_timeout_s:g} s")
            try:
                with tracing.span("router.forward", {"podium.replica": address}, client=True):
                    if protocol is WireProtocol.OPEN_INFERENCE:
                        reply = await self._pool.infer(address, body, timeout_s)
                    elif streams:
                        return await self._open_stream(address, route, body, content_type, timeout_s)
                    else:
                        reply = await self._pool.predict(address, body, content_type or "application/json",
                                                         timeout_s)
            except StreamRequired:   # the replica's model streams: this request goes over its event stream
                self._streaming.add(route.deployment_key)
                streams = True
                tried.discard(address)
                continue
            except ReplicaUnreachable as exc:
                self._pool.eject(address)
                if exc.may_have_run:
                    if resent:
                        raise Unavailable("the model's replicas failed while answering this request, twice",
                                          retry_after_s=1) from None
                    resent = True
                log.warning("replica %s of %s unreachable; trying another", address, route.served_entity_name)
                continue
            if reply.http_status != 200:
                raise model_error(reply.http_status, reply.body)
            return QueryResult(reply.body, reply.content_type or "application/json", route.served_entity_name,
                               model_ms=reply.model_ms)

    async def _open_stream(self, address: str, route: RouteTarget, body: bytes, content_type: str,
                           timeout_s: float) -> QueryResult:
        """The replica's event stream, once its first event came (an error before it is the query's error)."""
        started = time.monotonic()
        first, rest = await self._pool.open_events(address, body, content_type or "application/json", timeout_s)
        if first.http_status:
            await rest.aclose()   # type: ignore[attr-defined]
            raise model_error(first.http_status, first.data)
        return QueryResult(b"", "text/event-stream", route.served_entity_name, agent_wire.sse(first, rest),
                           model_ms=(time.monotonic() - started) * 1000)

    async def is_ready(self, token: str, endpoint_name: str, served_entity_name: str | None = None) -> bool:
        """Whether queries would be served now: every routed entity (or the named one) has a ready replica."""
        endpoint = (await self._authorized(token, endpoint_name, CAN_VIEW))[0]
        if served_entity_name is not None:
            return bool(self._served_entity(endpoint, served_entity_name).replica_addresses)
        routed = [r for r in endpoint.routes if r.traffic_percentage > 0]
        return bool(routed) and all(r.replica_addresses for r in routed)

    async def describe(self, token: str, endpoint_name: str, served_entity_name: str | None = None) -> ModelDescription:
        """The endpoint's served entities, and the signature of the named one (default: the one taking the
        largest share of traffic), asked of one of its replicas once per deployment."""
        endpoint = (await self._authorized(token, endpoint_name, CAN_VIEW))[0]
        if served_entity_name is not None:
            route = self._served_entity(endpoint, served_entity_name)
        else:
            route = max(endpoint.routes, key=lambda r: r.traffic_percentage, default=None)
            if route is None:
                raise Unavailable(f"Endpoint '{endpoint_name}' is not ready yet", retry_after_s=5)
        return ModelDescription(endpoint_name, tuple(r.served_entity_name for r in endpoint.routes),
                                route.served_entity_name, await self._deployment_metadata(endpoint_name, route))

    async def _deployment_metadata(self, endpoint_name: str, route: RouteTarget) -> ModelMetadata:
        """The served entity's model description, asked of one of its replicas once per deployment."""
        metadata = self._metadata.get(route.deployment_key)
        if metadata is None:
            address = pick_replica(route.replica_addresses, self._pool.in_flight, self._rng.randint)
            if address is None:  # scaled to zero: wait for a replica as a query would (and start one)
                with self.load.track(route.deployment_key):
                    await self._admission.wait(route.deployment_key, has_untried(self._routing, route, set()),
                                               self._admission.deadline())
                address = pick_replica(self._routing.replica_addresses(route.deployment_key) or (),
                                       self._pool.in_flight, self._rng.randint)
            if address is None:
                raise Unavailable(f"No ready replica of served entity '{route.served_entity_name}' of endpoint "
                                  f"'{endpoint_name}'", retry_after_s=2)
            metadata = await self._pool.metadata(address, self._forward_timeout_s)
            live = {r.deployment_key for e in self._routing.endpoints.values() for r in e.routes}
            self._metadata = {k: v for k, v in self._metadata.items() if k in live}
            self._streaming &= live
            self._metadata[route.deployment_key] = metadata
            if metadata.is_streaming:
                self._streaming.add(route.deployment_key)
        return metadata

    async def _authorized(self, token: str, endpoint_name: str, needed: str) -> tuple[EndpointRoutes, Principal]:
        """The endpoint and the caller, once it is authenticated and holds `needed` on it (404 when it may
        not even view it, as for an unknown name; 403 when it may view it but needs more)."""
        caller = await self._auth.caller(token)
        endpoint = self._endpoint(endpoint_name)
        require_level(caller, endpoint.acl, needed, endpoint_name)
        return endpoint, caller

    def _endpoint(self, endpoint_name: str) -> EndpointRoutes:
        """The endpoint's routes, for a caller already authorized (a retry's fresh look at the table)."""
        endpoint = self._routing.endpoints.get(endpoint_name)
        if endpoint is None:
            raise EndpointNotFound(f"Endpoint with name '{endpoint_name}' does not exist")
        return endpoint

    @staticmethod
    def _served_entity(endpoint: EndpointRoutes, served_entity_name: str) -> RouteTarget:
        for route in endpoint.routes:
            if route.served_entity_name == served_entity_name:
                return route
        raise EndpointNotFound(f"Served entity '{served_entity_name}' of endpoint '{endpoint.name}' does not exist")

    async def export_metrics(self, token: str, name: str) -> bytes:
        """Prometheus text of this router's counts for the endpoint."""
        await self._authorized(token, name, CAN_VIEW)
        endpoint = self._routing.endpoints.get(name)
        load = {route.served_entity_name: (self.load.in_flight(route.deployment_key), self.load.queued(route.deployment_key))
                for route in (endpoint.routes if endpoint else ())}
        return self._metrics.export(name, load)

    async def get_open_api(self, token: str, name: str, server_url: str = "") -> bytes:
        """The endpoint's OpenAPI document, from its served models' signatures in the registry."""
        endpoint = orjson.loads(await self.manage(token, "GET_ENDPOINT", params={"name": name}))  # CAN_VIEW
        config = endpoint.get("config") or endpoint.get("pending_config") or {}
        entities = config.get("served_entities", [])
        found = await asyncio.gather(*(self._signatures.signature(e["entity_name"], e["entity_version"])
                                       for e in entities))
        return orjson.dumps(build_document(endpoint, {e["name"]: s for e, s in zip(entities, found)}, server_url))

    # ---- management: sent to the control plane, whose cores validate and decide ----

    async def manage(self, token: str, operation: str, *, params: Mapping[str, str] | None = None,
                     query: Mapping[str, str] | None = None, body: bytes = b"",
                     waits_for_routing: bool = False) -> bytes:
        """The control plane's JSON answer to one management operation, for an authenticated caller. With
        `waits_for_routing` (read your writes), the answer waits until this router's routing table has the
        endpoint it names (up to ROUTING_CATCH_UP_S): an external model is ready at once, so a caller may
        query it right after this answer."""
        await self._auth.caller(token)
        answer = await self._control_plane.manage(token, operation, params=params, query=query, body=body)
        if waits_for_routing:
            await self._routing.wait_for_endpoint(orjson.loads(answer)["name"], ROUTING_CATCH_UP_S)
        return answer

    # ---- the AI gateway's records (Podium extensions): what they hold was sent to the model ----

    async def inference_table(self, token: str, name: str, start_time_ms: int | None, end_time_ms: int | None,
                              max_results: int, page_token: str | None) -> dict:
        endpoint = (await self._authorized(token, name, CAN_MANAGE))[0]
        return await self._require_ai_gateway().inference_table(endpoint, start_time_ms, end_time_ms, max_results,
                                                                page_token)

    async def usage(self, token: str, name: str, start_time_ms: int | None, end_time_ms: int | None) -> dict:
        endpoint = (await self._authorized(token, name, CAN_MANAGE))[0]
        return await self._require_ai_gateway().usage(endpoint, start_time_ms, end_time_ms)

    def _require_ai_gateway(self) -> "AiGateway":
        if self._ai_gateway is None:
            raise Unavailable("this router has no AI gateway (external models, rate limits, inference tables)")
        return self._ai_gateway

    # ---- the model registry, read-only, for the management UI ----

    async def list_registered_models(self, token: str) -> bytes:
        require_unscoped(await self._auth.caller(token))
        return orjson.dumps({"registered_models": await self._require_registry().registered_models()})

    async def get_model_signature(self, token: str, name: str, version: str) -> bytes:
        require_unscoped(await self._auth.caller(token))
        return orjson.dumps(await self._require_registry().signature(name, version))

    def _require_registry(self) -> "ModelRegistry":
        if self._registry is None:
            raise Unavailable("this router has no model registry configured")
        return self._registry
