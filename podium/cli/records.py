"""`podium inference-table` and `podium usage`: an endpoint's AI-gateway records (Podium's read API)."""

from __future__ import annotations

import argparse
from urllib.parse import quote

from podium.cli import exits
from podium.cli.endpoints import ENDPOINTS
from podium.cli.output import format_time_ms, print_table

PAGE = 1000


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    table = commands.add_parser(
        "inference-table", parents=[common], help="an endpoint's captured requests and responses",
        description="Print every row of the endpoint's inference table (GET .../inference-table), oldest first.")
    usage = commands.add_parser(
        "usage", parents=[common], help="an endpoint's requests and tokens per requester (GET .../usage)")
    for parser in (table, usage):
        parser.add_argument("endpoint")
        parser.add_argument("--start-time-ms", type=int, default=None, help="from this time (epoch milliseconds)")
        parser.add_argument("--end-time-ms", type=int, default=None, help="until this time (epoch milliseconds)")
    table.set_defaults(handler=show_inference_table)
    usage.set_defaults(handler=show_usage)


def show_inference_table(ctx) -> int:
    path = f"{ENDPOINTS}/{quote(ctx.args.endpoint, safe='')}/inference-table"
    rows, token = [], None
    while True:
        answer = ctx.client.get(path, start_time_ms=ctx.args.start_time_ms, end_time_ms=ctx.args.end_time_ms,
                                max_results=PAGE, page_token=token)
        rows += answer.get("rows", [])
        token = answer.get("next_page_token")
        if not token:
            break

    def human(value: dict) -> None:
        print_table(["TIME", "REQUEST_ID", "STATUS", "REQUESTER", "SERVED_ENTITY", "MS", "TOKENS_IN", "TOKENS_OUT"],
                    [[format_time_ms(r["timestamp_ms"]), r["databricks_request_id"], r["status_code"], r["requester"],
                      r["served_entity_name"], r["execution_duration_ms"], r["input_token_count"],
                      r["output_token_count"]] for r in value["rows"]],
                    empty=f"No captured requests for '{ctx.args.endpoint}'.")
    ctx.show({"rows": rows}, human)
    return exits.OK


def show_usage(ctx) -> int:
    answer = ctx.client.get(f"{ENDPOINTS}/{quote(ctx.args.endpoint, safe='')}/usage",
                            start_time_ms=ctx.args.start_time_ms, end_time_ms=ctx.args.end_time_ms)

    def human(value: dict) -> None:
        print_table(["REQUESTER", "REQUESTS", "ERRORS", "BLOCKED", "FALLBACKS", "TOKENS_IN", "TOKENS_OUT"],
                    [[u["requester"], u["request_count"], u["error_count"], u.get("blocked_count", 0),
                      u.get("fallback_count", 0), u["input_token_count"], u["output_token_count"]]
                     for u in value.get("usage", [])],
                    empty=f"No usage recorded for '{ctx.args.endpoint}'.")
        if value.get("budgets"):   # spend budgets: what each has spent in its current day or month
            print()
            print_table(["BUDGET", "PRINCIPAL", "PERIOD", "SPENT", "LIMIT", "UNIT", "RENEWS"],
                        [[b["key"], b.get("principal", ""), b["period"], b.get("spent_tokens", b.get("spent_usd")),
                          b.get("limit_tokens", b.get("limit_usd")), "tokens" if "limit_tokens" in b else "usd",
                          format_time_ms(b["renews_at_ms"])] for b in value["budgets"]])
    ctx.show(answer, human)
    return exits.OK
