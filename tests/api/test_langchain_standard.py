"""LangChain's own standard integration suite (`langchain-tests`, pinned) run against a launched phi3ov server
through `ChatOpenAI`: what LangChain users rely on, checked by LangChain's tests rather than ours.

Tool calling is declared off: the bundled 135M model does not call tools reliably (phi3ov's tool support is
tested in test_tools.py). JSON mode and structured output are on: constrained replies must end by themselves.
"""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from phi3ov.process import ServerProcess

KEY = "langchain-key-314"
_server: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("langchain") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path), "--api-key", KEY], log_path=log) as proc:
        _server["url"] = proc.url
        yield proc
    _server.clear()


class TestPhi3ovChatOpenAI(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict:
        return {"model": "SmolLM2-135M-Instruct", "base_url": f"{_server['url']}/v1", "api_key": KEY,
                "temperature": 0, "max_tokens": 256, "timeout": 120, "max_retries": 0}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False
