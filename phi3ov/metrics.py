"""Prometheus metrics, the names and shapes OVMS and vLLM dashboards read.

One `Metrics` per server (its own registry, so two servers in one process never mix figures):
requests by route and status, prompt and generated tokens, time to first token and time per
output token as histograms, and replies running and waiting as gauges read when scraped.
`GET /metrics` (behind the API key when one is set) serves them in the text format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6)
TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class Metrics:
    def __init__(self, running: Callable[[], float], waiting: Callable[[], float]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("phi3ov_requests", "Requests answered, by route and HTTP status.",
                                ["route", "status"], registry=self.registry)
        self.prompt_tokens = Counter("phi3ov_prompt_tokens", "Prompt tokens processed.", registry=self.registry)
        self.generation_tokens = Counter("phi3ov_generation_tokens", "Tokens generated.", registry=self.registry)
        self.ttft = Histogram("phi3ov_time_to_first_token_seconds", "From request to first text, as the client sees it.",
                              buckets=TTFT_BUCKETS, registry=self.registry)
        self.tpot = Histogram("phi3ov_time_per_output_token_seconds", "Decode time per generated token.",
                              buckets=TPOT_BUCKETS, registry=self.registry)
        Gauge("phi3ov_requests_running", "Replies being generated.", registry=self.registry).set_function(running)
        Gauge("phi3ov_requests_waiting", "API requests waiting for a free slot.",
              registry=self.registry).set_function(waiting)

    def reply_done(self, reply: Any) -> None:
        """Record a finished reply's figures (UI or API)."""
        stats = reply.stats
        if stats is None:
            return
        self.prompt_tokens.inc(stats.input_tokens)
        self.generation_tokens.inc(stats.output_tokens)
        if reply.client_ttft_ms is not None:
            self.ttft.observe(reply.client_ttft_ms / 1000)
        if stats.tokens_per_s > 0:
            self.tpot.observe(1 / stats.tokens_per_s)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
