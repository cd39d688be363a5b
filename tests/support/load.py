"""A bounded load generator for fault-injection tests: a few client threads on 127.0.0.1 sending queries
back to back, round-robin over one or more router URLs, counting every answer by URL and status."""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests


class SteadyLoad:
    """`clients` threads, each sending one query at a time until stopped; every request has `timeout_s`.

    `statuses[url][status]` counts answers (a status code, or the exception's name for no answer);
    `slowest_s` is the longest request; `failures` keeps (url, status, body) of the first non-200s.
    """

    def __init__(self, urls: list[str], path: str, token: str, payload: dict, clients: int = 4,
                 timeout_s: float = 30.0):
        self.statuses: dict[str, Counter] = {url: Counter() for url in urls}
        self.slowest_s = 0.0
        self.failures: list[tuple[str, object, str]] = []
        self.refused = 0   # connections refused (nothing sent): re-sent to another URL, as a load balancer does
        self._urls, self._path, self._payload, self._timeout_s = urls, path, payload, timeout_s
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, index: int) -> None:
        sent = index
        urls = list(self._urls)
        with requests.Session() as session:
            while not self._stop.is_set():
                url = urls[sent % len(urls)]
                sent += 1
                started = time.monotonic()
                body = ""
                try:
                    reply = session.post(url + self._path, json=self._payload, headers=self._headers,
                                         timeout=self._timeout_s)
                    status, body = reply.status_code, reply.text[:300]
                except requests.ConnectionError as exc:
                    if "refused" in str(exc) and len(urls) > 1:  # that URL is down: take it out of rotation
                        urls.remove(url)
                        with self._lock:
                            self.refused += 1
                        continue
                    status = type(exc).__name__
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.statuses[url][status] += 1
                    self.slowest_s = max(self.slowest_s, time.monotonic() - started)
                    if status != 200 and len(self.failures) < 50:
                        self.failures.append((url, status, body))

    def ok(self, url: str | None = None) -> int:
        return sum(c[200] for u, c in self.statuses.items() if url in (None, u))

    def failed(self, url: str | None = None) -> int:
        return sum(n for u, c in self.statuses.items() if url in (None, u) for s, n in c.items() if s != 200)

    def wait_for_answers(self, count: int, timeout_s: float = 60.0) -> None:
        """Returns once `count` more requests have been answered 200 (the load is flowing)."""
        target = self.ok() + count
        deadline = time.monotonic() + timeout_s
        while self.ok() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load not flowing: {self.statuses}")
            time.sleep(0.05)

    def __enter__(self) -> "SteadyLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout_s + 10)

    def summary(self) -> str:
        return f"ok={self.ok()} failed={self.failed()} slowest={self.slowest_s:.2f}s {dict(self.statuses)}"
