"""An OpenAI-compatible server for bench case 4 (the suite's fake providers, in their own process so the
load client never shares their interpreter). Run as `python -m bench.provider_server`; prints its URL."""

from __future__ import annotations

import signal

from tests.support.external import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.fake_providers import FakeProviders

if __name__ == "__main__":
    providers = FakeProviders(OPENAI_KEY, ANTHROPIC_KEY).start()
    print(providers.url, flush=True)
    signal.pause()   # until the bench's SIGTERM ends the process (the server thread is a daemon)
