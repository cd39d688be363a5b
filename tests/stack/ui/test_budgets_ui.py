"""Spend budgets in the web UI, in real Chromium: the endpoint page's Usage card shows what each budget spent in
its current period, and the AI gateway card says budgets are on."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.stack.ui.test_browser import page, sign_in  # noqa: F401  (`page` is a fixture)
from tests.support.external import create_external_endpoint, external_entity
from tests.support.stack import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]


def test_the_endpoint_page_shows_each_budgets_spend(page, stack, fake_providers, screenshot):  # noqa: F811
    from playwright.sync_api import expect

    name = "ui-budgeted"
    create_external_endpoint(stack, name, external_entity(fake_providers, "openai", "llm/v1/chat"), ai_gateway={
        "budgets": [{"limit_tokens": 10, "renewal_period": "day"}]})

    def query() -> bool:
        return requests.post(f"{stack.url}/serving-endpoints/{name}/invocations", timeout=30,
                             headers={"Authorization": f"Bearer {stack.admin_token}"},
                             json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    wait_for(query, timeout_s=10, what="the router to serve the endpoint")   # 3 tokens
    wait_for(lambda: stack.api("GET", f"/api/2.0/serving-endpoints/{name}/usage").json()["budgets"][0]["spent_tokens"],
             timeout_s=10, what="the answer's tokens to be charged")

    sign_in(page, stack)
    page.goto(stack.url + f"/ui/#/endpoints/{name}")
    expect(page).to_have_url(re.compile(rf"#/endpoints/{name}$"))
    row = page.locator("#usage table[data-budgets] tr[data-budget='endpoint:'] td")
    expect(row.nth(2)).to_have_text(time.strftime("%Y-%m-%d", time.gmtime()))
    expect(row.nth(3)).to_have_text("3 tokens")
    expect(row.nth(4)).to_have_text("10 tokens")
    expect(page.locator("#gateway-flags")).to_contain_text("Budgets: on")
    screenshot(page, "20-endpoint-budgets")
    assert page.errors == []
