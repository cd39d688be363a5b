"""The web UI in real Chromium: sign in, create an endpoint from a registered model, wait for READY, query it in
the playground, edit the traffic split, watch the list's live columns, check what a CAN_QUERY user sees (and that
the API refuses the edit anyway), create an external-model endpoint with a secret reference and stream a chat
answer from it, read its usage and inference table, grant and revoke EXECUTE on the served model from the
endpoint page; screenshots of every page."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.external import OPENAI_KEY
from tests.support.models import register_sklearn_classifier

pytestmark = [pytest.mark.stack, pytest.mark.browser]

NAME = "ui-flowers"
MODEL = "main.default.ui_flowers"
READY = ".page-header .badges[data-ready='READY'][data-config-update='NOT_UPDATING']"


@pytest.fixture(scope="module")
def ui_models(stack):
    return [register_sklearn_classifier(stack.info, MODEL, seed=seed) for seed in (0, 1)]


@pytest.fixture
def page(chromium, stack):
    from playwright.sync_api import expect

    # A loaded 2-core machine may need seconds for the router's first registry read (it imports MLflow).
    expect.set_options(timeout=30_000)
    context = chromium.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.errors = []
    page.api_requests = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("request", lambda request: page.api_requests.append(request)
            if re.search(r"/(api/2\.0|serving-endpoints)/", request.url) else None)
    yield page
    context.close()


def sign_in(page, stack, token: str | None = None):
    """Signs in with `token` (the admin's from podium.json by default)."""
    from playwright.sync_api import expect

    page.goto(stack.url + "/ui")
    page.evaluate("sessionStorage.clear()")
    page.goto(stack.url + "/ui/#/signin")
    expect(page).to_have_url(re.compile(r"/ui/#/signin$"))
    page.fill("#token", token or stack.admin_token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"#/endpoints$"))


def test_create_query_edit_and_delete_an_endpoint(page, stack, ui_models, screenshot):
    from playwright.sync_api import expect

    first, second = ui_models
    page.goto(stack.url + "/ui")
    expect(page.locator("#token")).to_be_visible()
    screenshot(page, "01-sign-in")
    sign_in(page, stack)
    expect(page.locator("#endpoints-table, .empty h2").first).to_be_visible()
    screenshot(page, "02-endpoints-list")

    # Create from the registry: the pickers list the registered model and its versions.
    page.click("#create-endpoint")
    expect(page).to_have_url(re.compile(r"#/endpoints/new$"))
    model_picker = page.locator(".entity[data-index='0'] select[data-field='entity_name']")
    expect(model_picker.locator(f"option[value='{MODEL}']")).to_have_count(1)
    page.fill("#endpoint-name", NAME)
    model_picker.select_option(MODEL)
    version_picker = page.locator(".entity[data-index='0'] select[data-field='entity_version']")
    expect(version_picker.locator("option")).to_have_count(2)
    version_picker.select_option(first.version)
    expect(page.locator("#traffic-total")).to_have_text("Total 100%")
    preview = json.loads(page.locator("#request-preview").text_content())
    assert preview["config"]["served_entities"] == [{"entity_name": MODEL, "entity_version": first.version,
                                                      "workload_size": "Small", "scale_to_zero_enabled": False}]
    screenshot(page, "03-create-endpoint")
    page.click("#save-endpoint")

    # The endpoint page shows the rollout, then READY.
    expect(page).to_have_url(re.compile(rf"#/endpoints/{NAME}$"))
    expect(page.locator("#served-entities table")).to_be_visible()
    screenshot(page, "04-endpoint-rolling-out")
    expect(page.locator(READY)).to_be_visible(timeout=180_000)
    expect(page.locator("#pending-config")).to_be_hidden()
    expect(page.locator("#served-entities tr[data-entity='ui_flowers-1']")).to_contain_text("1 of 1 replicas ready")
    # Permissions come from the Databricks permissions API: the creator manages, and so do the admins.
    expect(page.locator("#permissions tr[data-principal='admins']")).to_contain_text("CAN_MANAGE")
    expect(page.locator("#permissions tr[data-principal='admin']")).to_contain_text("CAN_MANAGE")
    expect(page.locator("#grant-form")).to_be_visible()
    expect(page.locator("#usage")).to_contain_text("No usage recorded")   # no AI gateway on this endpoint
    screenshot(page, "05-endpoint-ready")

    # The playground: prefilled from the signature, answers with latency and the served entity.
    page.click("#query-endpoint")
    editor = page.locator("#query-input")
    expect(editor).to_have_value(re.compile(r'"sepal_length"'))
    prefilled = json.loads(editor.input_value())
    assert prefilled["dataframe_split"]["columns"] == list(first.frame.columns)
    editor.fill(json.dumps({"dataframe_split": {"columns": list(first.frame.columns), "data": first.frame.values.tolist()}}))
    page.click("#send-query")
    expect(page.locator("#served-by")).to_contain_text("ui_flowers-1")
    expect(page.locator("#latency")).to_contain_text(re.compile(r"\d+ ms"))
    assert json.loads(page.locator("#query-output").text_content()) == {
        "predictions": first.model.predict(first.frame).tolist()}
    editor.fill('{"dataframe_split": {"columns": ["sepal_length"], "data": [[1.0]]}}')
    editor.press("Control+Enter")
    expect(page.locator("#response-meta")).to_contain_text("INVALID_PARAMETER_VALUE")
    expect(page.locator("#query-output")).to_contain_text("petal_width")
    screenshot(page, "06-query-playground")

    # Edit: add version 2 and split the traffic; a split that does not sum to 100 cannot be saved.
    page.goto(f"{stack.url}/ui/#/endpoints/{NAME}")
    page.click("#edit-endpoint")
    expect(page.locator(".entity[data-index='0'] select[data-field='entity_name']")).to_have_value(MODEL)
    page.click("#add-entity")
    page.locator(".entity[data-index='1'] select[data-field='entity_name']").select_option(MODEL)
    expect(page.locator(".entity[data-index='1'] select[data-field='entity_version']")).to_have_value(second.version)
    page.fill("[data-traffic='0']", "70")
    page.fill("[data-traffic='1']", "40")
    expect(page.locator("#traffic-total")).to_have_text(re.compile("Total 110%"))
    expect(page.locator("#save-endpoint")).to_be_disabled()
    expect(page.locator("#problems")).to_contain_text("must sum to 100")
    screenshot(page, "07-traffic-split-invalid")
    page.fill("[data-traffic='1']", "30")
    expect(page.locator("#traffic-total")).to_have_text("Total 100%")
    expect(page.locator("#save-endpoint")).to_be_enabled()
    screenshot(page, "08-edit-traffic-split")
    page.click("#save-endpoint")
    expect(page).to_have_url(re.compile(rf"#/endpoints/{NAME}$"))
    expect(page.locator(READY)).to_be_visible(timeout=180_000)
    expect(page.locator("#served-entities tr[data-entity='ui_flowers-2']")).to_contain_text("30%")
    # Served-model logs and the request charts come from the same REST API (GET .../logs, .../metrics).
    expect(page.locator("#logs-output")).not_to_have_text(re.compile(r"^(Loading|Choose)"))
    expect(page.locator("#logs-output")).not_to_have_class(re.compile("code-error"))
    expect(page.locator("#metrics")).to_be_visible()
    expect(page.locator("#metrics figcaption")).to_contain_text([
        "Requests / s", "4xx answers / s", "5xx answers / s", "Latency p50 (ms)", "Latency p99 (ms)", "In flight",
        "Queue depth", "Replicas desired", "Replicas ready"])
    expect(page.locator("#metrics svg path[stroke]").first).to_be_attached()   # two samples: a line is drawn
    screenshot(page, "09-endpoint-traffic-split")
    config = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()["config"]
    assert {r["served_entity_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]} == {
        "ui_flowers-1": 70, "ui_flowers-2": 30}

    # The list refreshes on its own: state, served entities, replicas ready / desired, and the request rate and
    # latency quantiles over the samples it has taken since it opened. The figures are sampled for the first
    # 50 endpoints the filter shows: this session's stack holds more, sorted ahead of this one.
    page.click("a[data-nav='endpoints']")
    page.fill("input[aria-label='Filter endpoints']", NAME)
    row = page.locator(f"#endpoints-table tr[data-endpoint='{NAME}']")
    expect(row).to_contain_text("Ready")
    expect(row).to_contain_text(f"{MODEL} · v{second.version}")
    expect(row.locator("[data-col='replicas']")).to_have_text("2 / 2")
    expect(row.locator("[data-col='rps']")).to_have_text(re.compile(r"^\d+\.\d\d$"))   # two samples taken
    scoring = {"dataframe_split": {"columns": list(first.frame.columns), "data": first.frame.values.tolist()[:1]}}
    for _ in range(6):
        assert stack.api("POST", f"/serving-endpoints/{NAME}/invocations", json=scoring).status_code == 200
    expect(row.locator("[data-col='p50']")).to_have_text(re.compile(r"^\d+\.\d$"), timeout=15_000)
    expect(row.locator("[data-col='p99']")).to_have_text(re.compile(r"^\d+\.\d$"))
    assert float(row.locator("[data-col='rps']").text_content()) > 0
    screenshot(page, "10-endpoints-list")

    # Every API call carried the signed-in token.
    calls = [r for r in page.api_requests if r.url.startswith(stack.url)]
    assert len(calls) > 10
    assert all(r.all_headers().get("authorization") == f"Bearer {stack.admin_token}" for r in calls)

    # Delete, through a confirmation dialog.
    page.goto(f"{stack.url}/ui/#/endpoints/{NAME}")
    page.click("#delete-endpoint")
    expect(page.locator("#dialog-confirm")).to_be_visible()
    screenshot(page, "11-delete-dialog")
    page.click("#dialog-confirm")
    expect(page).to_have_url(re.compile(r"#/endpoints$"))
    assert stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").status_code == 404
    assert page.errors == []


def test_users_without_manage_see_no_edit_controls(page, stack, ui_models, screenshot):
    """The UI hides what the caller's `permission_level` does not allow: real users holding real grants
    (refusing the edit itself is the API's job and is tested with it)."""
    from playwright.sync_api import expect

    name = "ui-read-only"
    body = {"name": name, "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": ui_models[0].version}]}}
    created = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert created.status_code == 200
    try:
        for level, can_query in (("CAN_QUERY", True), ("CAN_VIEW", False)):
            user = f"ui-{level.lower().replace('_', '-')}"
            token = stack.user_token(user)
            grant = {"access_control_list": [{"user_name": user, "permission_level": level}]}
            assert stack.api("PATCH", f"/api/2.0/permissions/serving-endpoints/{created.json()['id']}",
                             json=grant).status_code == 200
            sign_in(page, stack, token)
            page.goto(f"{stack.url}/ui/#/endpoints/{name}")
            expect(page.locator("#permission-level")).to_have_text(level)
            expect(page.locator("#served-entities table")).to_be_visible()
            expect(page.locator("#edit-endpoint")).to_have_count(0)
            expect(page.locator("#delete-endpoint")).to_have_count(0)
            expect(page.locator("#query-endpoint")).to_have_count(1 if can_query else 0)
            expect(page.locator("#edit-ai-gateway")).to_be_hidden()
            expect(page.locator("#grant-form")).to_have_count(0)
            expect(page.locator("#usage")).to_be_hidden()
            expect(page.locator("#permissions tr[data-principal='%s']" % user)).to_contain_text(level)
            screenshot(page, f"12-endpoint-as-{level.lower()}")
            # Forcing the edit from this signed-in page (its token, the API users call) is refused all the same.
            forced = page.evaluate("""async (name) => {
                const answer = await fetch(`/api/2.0/serving-endpoints/${name}/config`, { method: 'PUT',
                  headers: { Authorization: `Bearer ${sessionStorage.getItem('podium.token')}`, 'Content-Type': 'application/json' },
                  body: JSON.stringify({ served_entities: [] }) });
                return [answer.status, await answer.json()];
            }""", name)
            assert forced[0] == 403 and forced[1]["error_code"] == "PERMISSION_DENIED", forced
        # The config is unchanged (still the first one, whether rolled out yet or pending).
        answer = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
        assert (answer.get("config") or answer["pending_config"])["served_entities"][0]["entity_name"] == MODEL
        assert page.errors == []
    finally:
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_model_grants_card_grants_and_revokes_execute(page, stack, ui_models, screenshot):
    """The endpoint page's "Model grants" card shows the served model's effective Unity Catalog grants; the
    admin (MANAGE everywhere) grants EXECUTE to a user through it and revokes it, and the grants API agrees.
    The user, holding EXECUTE but not MANAGE, sees its own grant and no form."""
    from playwright.sync_api import expect

    name, user = "ui-grants", "ui-grantee"
    grants_api = f"/api/2.1/unity-catalog/permissions/function/{MODEL}"
    token = stack.user_token(user)
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "config": {"served_entities": [
        {"entity_name": MODEL, "entity_version": ui_models[0].version}]}})
    assert created.status_code == 200, created.text
    try:
        sign_in(page, stack)
        page.goto(f"{stack.url}/ui/#/endpoints/{name}")
        card = page.locator("#model-grants")
        expect(card).to_be_visible()
        expect(card.locator("#grants-model")).to_have_value(MODEL)
        expect(card.locator("#model-grant-form")).to_be_visible()
        card.locator("#model-grant-principal").fill(user)
        card.locator("#model-grant-privilege").select_option("EXECUTE")
        card.locator("#model-grant-form button[type=submit]").click()
        expect(card.locator(f"tr[data-principal='{user}']")).to_contain_text("EXECUTE")
        screenshot(page, "16-model-grants")
        assert stack.api("GET", grants_api, params={"principal": user}).json()["privilege_assignments"] == [
            {"principal": user, "privileges": ["EXECUTE"]}]
        # A bad principal is the API's 400, shown in the card.
        card.locator("#model-grant-principal").fill("nobody-at-all")
        card.locator("#model-grant-form button[type=submit]").click()
        expect(card.locator("#model-grant-error")).to_contain_text("INVALID_PARAMETER_VALUE")

        # The grantee sees its own grant, and no form: it holds no MANAGE.
        grant = {"access_control_list": [{"user_name": user, "permission_level": "CAN_VIEW"}]}
        assert stack.api("PATCH", f"/api/2.0/permissions/serving-endpoints/{created.json()['id']}",
                         json=grant).status_code == 200
        sign_in(page, stack, token)
        page.goto(f"{stack.url}/ui/#/endpoints/{name}")
        expect(card.locator(f"tr[data-principal='{user}']")).to_contain_text("EXECUTE")
        expect(card.locator("#model-grant-form")).to_have_count(0)
        expect(card.locator("[data-revoke]")).to_have_count(0)

        # Revoked through the card, by the admin.
        sign_in(page, stack)
        page.goto(f"{stack.url}/ui/#/endpoints/{name}")
        card.locator(f"tr[data-principal='{user}'] [data-revoke='EXECUTE']").click()
        expect(card.locator(f"tr[data-principal='{user}']")).to_have_count(0)
        assert stack.api("GET", grants_api, params={"principal": user}).json()["privilege_assignments"] == []
        assert page.errors == []
    finally:
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")
        stack.api("PATCH", grants_api, json={"changes": [{"principal": user, "remove": ["EXECUTE"]}]})


def test_sign_out_forgets_the_token(page, stack):
    from playwright.sync_api import expect

    sign_in(page, stack)
    assert page.evaluate("sessionStorage.getItem('podium.token')") == stack.admin_token
    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"#/signin$"))
    assert page.evaluate("sessionStorage.getItem('podium.token')") is None
    page.goto(f"{stack.url}/ui/#/endpoints")
    expect(page).to_have_url(re.compile(r"#/signin$"))   # signed out: every page leads to sign-in


def test_chat_streams_from_an_external_model_behind_a_secret_reference(page, stack, fake_providers, screenshot):
    """An external endpoint made in the editor (the key as a secret reference), its AI gateway switched on from the
    endpoint page, a chat answer streamed into the playground word by word, then its usage and inference rows."""
    from playwright.sync_api import expect

    name = "ui-chat"
    assert stack.api("POST", "/api/2.0/secrets/scopes/create", json={"scope": "ui-llm"}).status_code in (200, 400, 409)
    assert stack.api("POST", "/api/2.0/secrets/put", json={"scope": "ui-llm", "key": "openai",
                                                           "string_value": OPENAI_KEY}).status_code == 200
    sign_in(page, stack)
    page.goto(stack.url + "/ui/#/endpoints/new")
    page.fill("#endpoint-name", name)
    page.click("#add-external")
    external = page.locator(".entity[data-index='1']")
    external.locator("[data-field='external.name']").fill("gpt-4o-mini")
    external.locator("[data-field='external.base']").fill(fake_providers.url + "/v1")
    external.locator("[data-field='external.key']").fill(OPENAI_KEY)   # a raw key is refused: a reference is asked
    expect(page.locator("#problems")).to_contain_text("must be a secret reference")
    external.locator("[data-field='external.key']").fill("{{secrets/ui-llm/openai}}")
    page.click("button[aria-label='Remove served entity 1']")   # drop the registered-model entity
    expect(page.locator("#traffic-total")).to_have_text("Total 100%")
    preview = json.loads(page.locator("#request-preview").text_content())
    assert preview["config"]["served_entities"] == [{"external_model": {
        "provider": "openai", "name": "gpt-4o-mini", "task": "llm/v1/chat",
        "openai_config": {"openai_api_base": fake_providers.url + "/v1", "openai_api_key": "{{secrets/ui-llm/openai}}"}}}]
    screenshot(page, "13-create-external-endpoint")
    page.click("#save-endpoint")
    expect(page).to_have_url(re.compile(rf"#/endpoints/{name}$"))
    expect(page.locator(READY)).to_be_visible()
    expect(page.locator(".page-header .kind")).to_have_text("external")

    # Turn on usage tracking and the inference table from the endpoint page (PUT …/ai-gateway).
    page.click("#edit-ai-gateway")
    page.fill("#ai-gateway-json", json.dumps({"usage_tracking_config": {"enabled": True}, "inference_table_config": {
        "enabled": True, "catalog_name": "main", "schema_name": "default"}}))
    page.click("#save-ai-gateway")
    expect(page.locator("#gateway-flags")).to_contain_text("Inference table: on")
    assert stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["ai_gateway"]["inference_table_config"]["enabled"]

    # The playground opens on the chat box. `__hold__` makes the provider stop after its first word until the
    # test releases it: that word is on screen while the answer is still streaming, so nothing was buffered.
    page.click("#query-endpoint")
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#query-input")).to_be_hidden()
    page.fill("#chat-input", "__hold__")
    page.press("#chat-input", "Enter")
    answer = page.locator(".chat-assistant .chat-text").last
    expect(answer).to_have_text("echo:")
    expect(answer).to_have_class(re.compile("streaming"))
    fake_providers.release.set()
    expect(answer).to_have_text("echo: __hold__")
    expect(answer).not_to_have_class(re.compile("streaming"))
    assert fake_providers.released_in_time[-1] is True
    page.fill("#chat-input", "stream me some words")
    page.press("#chat-input", "Enter")
    expect(page.locator(".chat-assistant .chat-text").last).to_have_text("echo: stream me some words")
    expect(page.locator("#chat-chunks")).to_have_text(re.compile(r"Chunks 5$"))
    expect(page.locator("#chat-served-by")).to_contain_text("gpt-4o-mini")
    expect(page.locator("#chat-first-token")).to_contain_text(re.compile(r"\d+ ms"))
    sent = fake_providers.requests[-1]
    assert sent["body"]["stream"] is True and [m["content"] for m in sent["body"]["messages"]] == [
        "__hold__", "echo: __hold__", "stream me some words"]   # the conversation so far
    assert sent["headers"]["Authorization"] == f"Bearer {OPENAI_KEY}"   # resolved from the secrets store
    screenshot(page, "14-chat-playground")

    # Back on the endpoint page: the requester's usage and the two captured rows, newest first.
    page.goto(f"{stack.url}/ui/#/endpoints/{name}")
    expect(page.locator("#usage tr[data-requester='admin'] td").nth(1)).to_have_text("2", timeout=40_000)
    rows = page.locator("#inference-table tbody tr")
    expect(rows).to_have_count(2, timeout=40_000)
    expect(rows.first).to_contain_text("stream me some words")
    expect(rows.first).to_contain_text("gpt-4o-mini")
    screenshot(page, "15-endpoint-usage-and-inference-table")
    assert page.errors == []
    assert stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}").status_code == 200
