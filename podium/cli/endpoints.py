"""`podium endpoints list|get|create|update|delete|query|rollout`: serving endpoints over the Databricks REST API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import quote

from podium.cli import exits, rollouts
from podium.cli.output import format_time_ms, print_fields, print_json, print_table

ENDPOINTS = "/api/2.0/serving-endpoints"
FAILED_UPDATES = ("UPDATE_FAILED", "UPDATE_CANCELED")


class SpecError(exits.UsageError):
    """A spec that cannot be read or is not a JSON object (nothing was sent)."""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("endpoints", help="list, inspect, create, update, delete and query serving endpoints")
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    sub.add_parser("list", parents=[common], help="every endpoint with its state").set_defaults(handler=list_endpoints)

    get = sub.add_parser("get", parents=[common], help="one endpoint: config, state, pending config")
    get.add_argument("name")
    get.set_defaults(handler=get_endpoint)

    wait_options = argparse.ArgumentParser(add_help=False)
    wait_options.add_argument("--no-wait", action="store_true", help="return once the server accepted the spec")
    wait_options.add_argument("--timeout", type=float, default=1200.0, metavar="S",
                              help="seconds to wait for the endpoint to be ready (default 1200)")

    create = sub.add_parser(
        "create", parents=[common, wait_options], help="create an endpoint from a JSON spec and wait until it serves",
        description="SPEC is the POST /api/2.0/serving-endpoints body: inline JSON, a file path, @path, or - for stdin.")
    create.add_argument("spec", help='e.g. \'{"name": "iris", "config": {"served_entities": [...]}}\' or spec.json')
    create.add_argument("--name", help="the endpoint's name (overrides the spec's)")
    create.set_defaults(handler=create_endpoint)

    update = sub.add_parser(
        "update", parents=[common, wait_options], help="replace an endpoint's config and wait until it serves",
        description="SPEC is the PUT .../config body ({\"served_entities\", \"traffic_config\"}), or a create spec "
                    "whose \"config\" is used: inline JSON, a file path, @path, or - for stdin.")
    update.add_argument("name")
    update.add_argument("spec")
    update.set_defaults(handler=update_config)

    delete = sub.add_parser("delete", parents=[common], help="delete an endpoint and stop its replicas")
    delete.add_argument("name")
    delete.set_defaults(handler=delete_endpoint)

    query = sub.add_parser(
        "query", parents=[common], help="send one scoring request and print the answer",
        description="DATA is the invocations body (dataframe_split, dataframe_records, instances, inputs, or a "
                    "chat/completions/embeddings request): inline JSON, a file path, @path, or - for stdin.")
    query.add_argument("name")
    query.add_argument("data")
    query.set_defaults(handler=query_endpoint)

    rollouts.register(sub, common)


# ---- reading specs ----

def load_spec(source: str) -> dict:
    """The JSON object in `source`: inline JSON, `-` (stdin), `@path` or a path."""
    text = source
    if source == "-":
        text = sys.stdin.read()
    elif not source.lstrip().startswith(("{", "[")):
        path = Path(source[1:] if source.startswith("@") else source).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"the spec is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SpecError("the spec must be a JSON object")
    return value


# ---- rendering ----

def entity_label(entity: dict) -> str:
    external = entity.get("external_model")
    if external:
        return f"{external.get('provider', '?')}:{external.get('name', '?')}"
    return f"{entity.get('entity_name', '?')}@{entity.get('entity_version', '?')}"


def endpoint_kind(endpoint: dict) -> str:
    config = endpoint.get("config") or endpoint.get("pending_config") or {}
    entities = config.get("served_entities") or []
    return "external" if any(e.get("external_model") for e in entities) else "custom"


def render_list(answer: dict) -> None:
    rows = []
    for endpoint in answer.get("endpoints", []):
        state = endpoint.get("state", {})
        config = endpoint.get("config") or {}
        rows.append([endpoint["name"], state.get("ready", ""), state.get("config_update", ""), endpoint_kind(endpoint),
                     ", ".join(entity_label(e) for e in config.get("served_entities", [])),
                     endpoint.get("creator", ""), format_time_ms(endpoint.get("last_updated_timestamp"))])
    print_table(["NAME", "READY", "CONFIG_UPDATE", "KIND", "SERVED_ENTITIES", "CREATOR", "LAST_UPDATED"], rows,
                empty="No serving endpoints.")


def _render_config(title: str, config: dict) -> None:
    print(f"\n{title} (version {config.get('config_version', '?')}):")
    traffic = {r.get("served_entity_name") or r.get("served_model_name"): r.get("traffic_percentage")
               for r in (config.get("traffic_config") or {}).get("routes", [])}
    rows = []
    for entity in config.get("served_entities", []):
        state = entity.get("state") or {}
        rows.append([entity.get("name"), entity_label(entity), entity.get("workload_size", ""),
                     "yes" if entity.get("scale_to_zero_enabled") else "no",
                     f"{traffic.get(entity.get('name'), 0)}%", replicas_label(state), state.get("deployment", ""),
                     state.get("deployment_state_message", "")])
    print_table(["  SERVED_ENTITY", "MODEL", "SIZE", "SCALE_TO_ZERO", "TRAFFIC", "REPLICAS", "DEPLOYMENT", "MESSAGE"],
                [["  " + str(r[0])] + r[1:] for r in rows])


def replicas_label(state: dict) -> str:
    """`ready/desired` replicas (the autoscaler's counts), `+N` more starting; empty when not reported."""
    if "desired_replicas" not in state:
        return ""
    label = f"{state.get('ready_replicas', 0)}/{state['desired_replicas']}"
    starting = state.get("starting_replicas", 0)
    return f"{label}+{starting}" if starting else label


def render_endpoint(endpoint: dict) -> None:
    state = endpoint.get("state", {})
    print_fields([
        ("Name", endpoint.get("name")), ("State", f"{state.get('ready', '')} / {state.get('config_update', '')}"),
        ("Kind", endpoint_kind(endpoint)), ("Creator", endpoint.get("creator")),
        ("Created", format_time_ms(endpoint.get("creation_timestamp"))),
        ("Last updated", format_time_ms(endpoint.get("last_updated_timestamp"))),
        ("Permission", endpoint.get("permission_level")),
        ("Tags", ", ".join(f"{t['key']}={t.get('value', '')}" for t in endpoint.get("tags", [])) or "-"),
    ])
    if endpoint.get("config"):
        _render_config("Serving config", endpoint["config"])
    if endpoint.get("pending_config"):
        _render_config("Pending config", endpoint["pending_config"])
    for field in ("rate_limits", "ai_gateway"):
        if endpoint.get(field):
            print(f"\n{field}: {json.dumps(endpoint[field])}")


def progress_line(endpoint: dict) -> str:
    """One line saying where a config update stands: the state, then each served entity's deployment."""
    state = endpoint.get("state", {})
    config = endpoint.get("pending_config") or endpoint.get("config") or {}
    parts = [f"{state.get('config_update', '?')}, {state.get('ready', '?')}"]
    for entity in config.get("served_entities", []):
        entity_state = entity.get("state") or {}
        message = entity_state.get("deployment_state_message")
        parts.append(f"{entity.get('name')}: {entity_state.get('deployment', '?')}" + (f" ({message})" if message else ""))
    return " | ".join(parts)


def failure_reason(endpoint: dict) -> str:
    """Why the update failed: the failed served entities' messages (the registry's reason, for example)."""
    config = endpoint.get("pending_config") or endpoint.get("config") or {}
    states = [(e.get("name"), e.get("state") or {}) for e in config.get("served_entities", [])]
    failed = [f"{name}: {s.get('deployment_state_message')}" for name, s in states
              if s.get("deployment") == "DEPLOYMENT_FAILED" and s.get("deployment_state_message")]
    others = [f"{name}: {s.get('deployment_state_message')}" for name, s in states if s.get("deployment_state_message")]
    return "; ".join(failed or others) or "the server gave no reason"


# ---- waiting for a config update ----

def wait_until_serving(ctx, name: str, timeout_s: float, interval_s: float = 1.0) -> tuple[int, dict]:
    """Polls GET until config_update leaves IN_PROGRESS, showing each change; (exit code, last endpoint)."""
    started = time.monotonic()
    last_line = ""
    while True:
        endpoint = ctx.client.get(f"{ENDPOINTS}/{quote(name, safe='')}")
        line = progress_line(endpoint)
        if line != last_line:
            ctx.note(f"[{time.monotonic() - started:6.1f}s] {line}")
            last_line = line
        update = endpoint.get("state", {}).get("config_update")
        if update == "NOT_UPDATING":
            return exits.OK, endpoint
        if update in FAILED_UPDATES:
            return exits.UPDATE_FAILED, endpoint
        if time.monotonic() - started > timeout_s:
            return exits.TIMED_OUT, endpoint
        time.sleep(interval_s)


def _finish(ctx, name: str, accepted: dict) -> int:
    if ctx.args.no_wait:
        ctx.show(accepted, render_endpoint)
        return exits.OK
    code, endpoint = wait_until_serving(ctx, name, ctx.args.timeout)
    if ctx.json:
        print_json(endpoint)
    if code == exits.OK:
        ctx.note(f"Endpoint '{name}' is {endpoint['state'].get('ready')}: config version "
                 f"{(endpoint.get('config') or {}).get('config_version', '?')} is serving.")
    elif code == exits.UPDATE_FAILED:
        print(f"Error: the config update of '{name}' failed: {failure_reason(endpoint)}", file=sys.stderr)
    else:
        print(f"Error: '{name}' is still updating after {ctx.args.timeout:g} s: {progress_line(endpoint)}",
              file=sys.stderr)
    return code


# ---- handlers ----

def list_endpoints(ctx) -> int:
    ctx.show(ctx.client.get(ENDPOINTS), render_list)
    return exits.OK


def get_endpoint(ctx) -> int:
    ctx.show(ctx.client.get(f"{ENDPOINTS}/{quote(ctx.args.name, safe='')}"), render_endpoint)
    return exits.OK


def create_endpoint(ctx) -> int:
    spec = load_spec(ctx.args.spec)
    if ctx.args.name:
        spec["name"] = ctx.args.name
    if isinstance(spec.get("config"), dict) and spec.get("name"):
        spec["config"].setdefault("name", spec["name"])   # as the SDK sends it
    accepted = ctx.client.post(ENDPOINTS, spec)
    name = accepted.get("name") or spec.get("name")
    ctx.note(f"Creating endpoint '{name}'...")
    return _finish(ctx, name, accepted)


def update_config(ctx) -> int:
    spec = load_spec(ctx.args.spec)
    if "served_entities" not in spec and "served_models" not in spec and isinstance(spec.get("config"), dict):
        spec = spec["config"]   # a whole create spec: its config is the update
    spec = {k: v for k, v in spec.items() if k != "name"}
    accepted = ctx.client.put(f"{ENDPOINTS}/{quote(ctx.args.name, safe='')}/config", spec)
    ctx.note(f"Updating the config of '{ctx.args.name}'...")
    return _finish(ctx, ctx.args.name, accepted)


def delete_endpoint(ctx) -> int:
    answer = ctx.client.delete(f"{ENDPOINTS}/{quote(ctx.args.name, safe='')}")
    ctx.show(answer, lambda _: print(f"Deleted endpoint '{ctx.args.name}'."))
    return exits.OK


def query_endpoint(ctx) -> int:
    body = load_spec(ctx.args.data)
    if body.get("stream") is True:
        return _query_stream(ctx, body)
    reply = ctx.client.call("POST", f"/serving-endpoints/{quote(ctx.args.name, safe='')}/invocations", body)
    served_by = {k.lower(): v for k, v in reply.headers.items()}.get("served-model-name", "")
    if ctx.json:
        print(json.dumps(reply.body))
    else:
        print_json(reply.body)
    ctx.note(f"served by {served_by or '?'} in {reply.latency_s * 1000:.0f} ms")
    return exits.OK


def stream_text(chunk: dict) -> str:
    """The text one streamed chunk adds: a chat delta's content, a completion's text, or an agent's delta (an
    MLflow ResponsesAgent's `response.output_text.delta`, a ChatAgent's `delta.content`, a pyfunc's `delta`)."""
    if not isinstance(chunk, dict):
        return ""
    if "choices" not in chunk and "delta" in chunk:
        if chunk.get("type", "response.output_text.delta") != "response.output_text.delta":
            return ""
        delta = chunk["delta"]
        return delta if isinstance(delta, str) else (delta or {}).get("content") or ""
    choices = chunk.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return delta.get("content") or choices[0].get("text") or ""


def _query_stream(ctx, body: dict) -> int:
    """Prints a streamed answer as it arrives: the text (or, with --json, each event as one JSON line)."""
    started = time.monotonic()
    first_s = None
    served_by = ""
    for kind, value in ctx.client.stream(f"/serving-endpoints/{quote(ctx.args.name, safe='')}/invocations", body):
        if kind == "headers":
            served_by = {k.lower(): v for k, v in value.items()}.get("served-model-name", "")
            continue
        if kind == "body":   # the server answered in one piece
            print(json.dumps(value) if ctx.json else json.dumps(value, indent=2))
            continue
        if first_s is None:
            first_s = time.monotonic() - started
        error = value.get("error") if isinstance(value, dict) else None
        if ctx.json:
            print(json.dumps(value), flush=True)
        elif not error:
            print(stream_text(value), end="", flush=True)
        if error:   # a mid-stream failure: the provider's message, and a non-zero exit
            if not ctx.json:
                print(flush=True)
            message = error.get("message", error) if isinstance(error, dict) else error
            print(f"Error: the stream failed: {message}", file=sys.stderr)
            return exits.API_ERROR
    if not ctx.json:
        print()
    first = f", first event in {first_s * 1000:.0f} ms" if first_s is not None else ""
    ctx.note(f"served by {served_by or '?'} in {(time.monotonic() - started) * 1000:.0f} ms{first}")
    return exits.OK
