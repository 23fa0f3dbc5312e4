"""JSON over HTTP to a launched server, for tests that check the raw answer rather than a client's reading."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def call(server: Any, path: str, body: dict | None = None, timeout: float = 120) -> dict:
    """GET (no body) or POST `body` as JSON; the answer's JSON. An HTTP error raises urllib's HTTPError."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())
