"""The CLI's one HTTP client: the router's REST API (the Databricks paths), with the bearer token."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

import requests

from podium import __version__
from podium.cli.target import Target


class ApiError(Exception):
    """An error answer from the server, or no answer at all (status 0)."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message

    def as_json(self) -> dict:
        return {"error_code": self.error_code, "message": self.message, "http_status": self.status}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any                 # the decoded JSON answer
    headers: dict[str, str]
    latency_s: float


class PodiumClient:
    def __init__(self, target: Target, timeout_s: float = 60.0):
        self.target = target
        self._timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"podium-cli/{__version__}"
        if target.token:
            self._session.headers["Authorization"] = f"Bearer {target.token}"
        if target.ca_file:
            self._session.verify = target.ca_file   # the local CA of `podium up --tls`

    def call(self, method: str, path: str, body: Any = None, *, params: dict | None = None,
             raw_body: bytes | None = None) -> Reply:
        """Sends one request; returns the decoded answer or raises ApiError with the server's code and message."""
        url = self.target.host + path
        headers = {"Accept": "application/json"}
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self._session.request(method, url, data=data, params=params, headers=headers,
                                             timeout=self._timeout_s)
        except requests.Timeout:
            raise ApiError(0, "DEADLINE_EXCEEDED", f"no answer from {self.target.host} within {self._timeout_s:g} s") from None
        except requests.ConnectionError as exc:
            reason = exc.args[0] if exc.args else exc
            raise ApiError(0, "UNREACHABLE", f"cannot reach Podium at {self.target.host} "
                           f"(host from {self.target.host_source}): {_short(reason)}") from None
        latency_s = time.monotonic() - started
        decoded = _decode(response)
        if response.status_code >= 400:
            if isinstance(decoded, dict) and ("error_code" in decoded or "message" in decoded):
                raise ApiError(response.status_code, str(decoded.get("error_code") or f"HTTP_{response.status_code}"),
                               str(decoded.get("message") or response.reason))
            text = response.text.strip()[:500] or response.reason
            raise ApiError(response.status_code, f"HTTP_{response.status_code}", text)
        return Reply(response.status_code, decoded, dict(response.headers), latency_s)

    def stream(self, path: str, body: Any) -> Iterator[tuple[str, Any]]:
        """POSTs a `stream: true` request; yields ("headers", dict) once, then ("data", decoded JSON) per
        server-sent event as it arrives (until `data: [DONE]`); an answer that is not a stream comes as one
        ("body", JSON). Error answers raise ApiError as call() does."""
        headers = {"Accept": "text/event-stream, application/json", "Content-Type": "application/json"}
        try:
            response = self._session.post(self.target.host + path, data=json.dumps(body).encode(), headers=headers,
                                          timeout=self._timeout_s, stream=True)
        except requests.Timeout:
            raise ApiError(0, "DEADLINE_EXCEEDED", f"no answer from {self.target.host} within {self._timeout_s:g} s") from None
        except requests.ConnectionError as exc:
            raise ApiError(0, "UNREACHABLE", f"cannot reach Podium at {self.target.host}: {_short(exc)}") from None
        with response:
            if response.status_code >= 400 or not response.headers.get("Content-Type", "").startswith("text/event-stream"):
                decoded = _decode(response)
                if response.status_code >= 400:
                    decoded = decoded if isinstance(decoded, dict) else {}
                    raise ApiError(response.status_code, str(decoded.get("error_code") or f"HTTP_{response.status_code}"),
                                   str(decoded.get("message") or response.text.strip()[:500] or response.reason))
                yield "headers", dict(response.headers)
                yield "body", decoded
                return
            yield "headers", dict(response.headers)
            data: list[str] = []
            for line in response.iter_lines(decode_unicode=True):
                if line:
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    continue
                event, data = "\n".join(data), []   # a blank line ends the event
                if event and event != "[DONE]":
                    yield "data", json.loads(event)

    def get(self, path: str, **params) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None} or None).body

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body if body is not None else {}).body

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body).body

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path).body


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return None


def _short(reason: object) -> str:
    text = str(reason)
    # urllib3 wraps the OS error in a long repr; the last clause is the part a person needs.
    return text.rsplit(": ", 1)[-1].rstrip(")'\"") if "Errno" in text else text
