"""The router serves the UI from its own package (no CDN, strict CSP) and a read-only registry view for it."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.support.models import register_sklearn_classifier

pytestmark = pytest.mark.stack

STATIC = Path(__file__).resolve().parents[3] / "services" / "router" / "ui" / "static"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_ui_is_served_with_a_strict_content_security_policy(stack):
    redirect = stack.api("GET", "/ui", allow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["Location"] == "/ui/"
    index = stack.api("GET", "/ui/")
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    csp = index.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    for asset in re.findall(r'(?:src|href)="([^"#]+)"', index.text):
        answer = stack.api("GET", asset)
        assert answer.status_code == 200, asset
    assert stack.api("GET", "/ui/static/app.js").headers["Content-Type"].startswith(
        ("application/javascript", "text/javascript"))


def test_every_static_file_is_served_and_loads_nothing_from_elsewhere(stack):
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {"index.html", "app.js", "styles.css", "api.js"} <= {p.name for p in files}
    for path in files:
        text = path.read_text()
        outside = [u for u in re.findall(r"https?://[^\s'\"`)]+", text) if not u.startswith(SVG_NAMESPACE)]
        assert not outside, f"{path.name} refers to {outside}"
        assert "innerHTML" not in text and "eval(" not in text, path.name
        served = stack.api("GET", f"/ui/static/{path.relative_to(STATIC).as_posix()}")
        assert served.status_code == 200 and served.content == path.read_bytes()


def test_static_files_cannot_escape_their_folder(stack):
    url = urlparse(stack.url)
    for path in ("/ui/static/../__init__.py", "/ui/static/%2e%2e/__init__.py", "/ui/static/nope.js"):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status == 404, path
        assert b"error_code" in body and b"import" not in body


def test_registered_models_lists_names_versions_and_aliases(stack):
    import mlflow

    first = register_sklearn_classifier(stack.info, "main.default.registry_view", seed=0)
    second = register_sklearn_classifier(stack.info, "main.default.registry_view", seed=1)
    mlflow.MlflowClient(tracking_uri=stack.info["tracking_uri"], registry_uri=stack.info["registry_uri"]) \
        .set_registered_model_alias("main.default.registry_view", "champion", first.version)
    answer = stack.api("GET", "/api/2.0/podium/registered-models")
    assert answer.status_code == 200
    [model] = [m for m in answer.json()["registered_models"] if m["name"] == "main.default.registry_view"]
    assert [v["version"] for v in model["versions"]] == [second.version, first.version]   # newest first
    assert model["aliases"] == {"champion": first.version}
    assert stack.api("GET", "/api/2.0/podium/registered-models/").status_code == 200   # trailing slash too


def test_signature_by_version_and_by_alias(stack):
    path = "/api/2.0/podium/registered-models/main.default.registry_view/versions/{}/signature"
    by_alias = stack.api("GET", path.format("champion"))
    assert by_alias.status_code == 200, by_alias.text
    signature = by_alias.json()
    assert [c["name"] for c in signature["inputs"]] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert all(c["type"] == "double" for c in signature["inputs"])
    assert stack.api("GET", path.format("@champion")).json()["version"] == signature["version"]
    missing = stack.api("GET", path.format("99"))
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    unknown = stack.api("GET", "/api/2.0/podium/registered-models/main.default.nope/versions/1/signature")
    assert unknown.status_code == 404 and "main.default.nope" in unknown.json()["message"]
