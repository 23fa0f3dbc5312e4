"""LangChain's own standard integration suite (`langchain-tests`, pinned) run against a launched phi3ov server
through `ChatOpenAI`: what LangChain users rely on, checked by LangChain's tests rather than ours.

Declared off, for the bundled 135M model, not for the server:
- tool calling: SmolLM2's chat template takes no tool definitions, so the server refuses `tools` for it (tool
  support is tested with a model whose template takes them, in test_tools.py);
- JSON mode (`test_json_mode`): the reply is JSON (the grammar sees to it, and bounds its whitespace and
  digits: test_json_bounds.py), but which keys it has is the model's choice, and this model does not follow
  "with 'setup' and 'punchline' keys" (it wrote {"title": ..., "description": ...}). Structured output with a
  schema (`with_structured_output`), where the keys are the schema's, is on and passes.
Usage in streams is on (`stream_usage`): ChatOpenAI asks for it only from api.openai.com unless told.
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
                "temperature": 0, "max_tokens": 256, "timeout": 120, "max_retries": 0, "stream_usage": True}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict:
        return {"method": "json_schema"}  # the schema as a constraint, not as a tool call

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False

    @pytest.mark.xfail(reason="ChatOpenAI sends a pydantic.v1 schema as a forced tool call whatever the method, "
                       "and SmolLM2's chat template takes no tools: the server answers a 400 that says so",
                       strict=True, raises=Exception)
    def test_structured_output_pydantic_2_v1(self, model) -> None:
        super().test_structured_output_pydantic_2_v1(model)
