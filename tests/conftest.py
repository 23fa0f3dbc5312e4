"""Shared fixtures: the real bundled model, a real engine, a real launched server."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["support.browserkit"]  # the browser fixtures (server, browser, open_chat)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "0")


@pytest.fixture(scope="session")
def bundled_ref():
    from phi3ov import models

    return models.bundled()


@pytest.fixture(scope="session")
def engine(bundled_ref):
    from phi3ov.engine import LocalEngine

    # Deterministic (no prefix cache): tests compare a reply with the same request asked again.
    return LocalEngine(bundled_ref, deterministic=True)


@pytest.fixture(scope="session")
def qwen_export(tmp_path_factory):
    """A tiny Qwen2 with Qwen2.5's chat template (support/tiny_qwen.py), exported int4 with `phi3ov export`."""
    import io

    from support.tiny_qwen import build_tiny_qwen

    from phi3ov.models import export

    source = build_tiny_qwen(tmp_path_factory.mktemp("qwensrc") / "tiny-qwen")
    return export.export(source, tmp_path_factory.mktemp("qwen") / "tiny-qwen-int4", log=io.StringIO())


@pytest.fixture
def greedy():
    from phi3ov.options import GenerationOptions

    return GenerationOptions(temperature=0, max_new_tokens=48)


@pytest.fixture(scope="module")
def client(request, server):
    """The official openai client for the module's `server` (with the module's KEY, if it sets one)."""
    import openai

    key = getattr(request.module, "KEY", "none")
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def model(client):
    return client.models.list().data[0].id
