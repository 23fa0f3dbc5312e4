"""The clients people point at a local server: the official openai client (sync and async) and LangChain's
ChatOpenAI, against a real launched server with the single engine (the batched one is tested in
test_api.py and test_api_features.py), so both engines serve structured output, logprobs and completions."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import openai
import pytest
from pydantic import BaseModel, Field

from phi3ov.process import ServerProcess

KEY = "clients-key-789"


class Colors(BaseModel):  # bounded: the object ends within max_tokens whatever the CPU's rounding
    colors: Annotated[list[Annotated[str, Field(max_length=20)]], Field(max_length=5)]


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("clients") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path), "--engine", "single", "--api-key", KEY],
                       log_path=log) as proc:
        yield proc


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def test_openai_sync_parse_stream_and_logprobs(client, model):
    parsed = client.chat.completions.parse(model=model, messages=ask("Name three colors."), max_tokens=200,
                                           temperature=0, response_format=Colors)
    assert isinstance(parsed.choices[0].message.parsed, Colors) and parsed.choices[0].message.parsed.colors
    with client.chat.completions.stream(model=model, messages=ask("Name three colors."), max_tokens=200,
                                        temperature=0, response_format=Colors) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 3 and final.choices[0].message.parsed == parsed.choices[0].message.parsed
    reply = client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=6, temperature=0,
                                           logprobs=True, top_logprobs=3, extra_body={"repetition_penalty": 1.0})
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens and all(len(c.top_logprobs) == 3 for c in content)
    for c in content:  # greedy, in bf16 on this engine: the chosen token is among the likeliest (near-ties may swap)
        assert c.token in [t.token for t in c.top_logprobs]
        assert c.logprob == next(t.logprob for t in c.top_logprobs if t.token == c.token)


def test_openai_async_chat_stream_and_completions(server, model):
    async def main() -> tuple[str, str, str]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120) as c:
            whole = await c.chat.completions.create(model=model, messages=ask("What is 2+2?"), max_tokens=12,
                                                    temperature=0)
            stream = await c.chat.completions.create(model=model, messages=ask("What is 2+2?"), max_tokens=12,
                                                     temperature=0, stream=True)
            streamed = "".join([e.choices[0].delta.content or "" async for e in stream if e.choices])
            completion = await c.completions.create(model=model, prompt="The capital of France is", max_tokens=6,
                                                    temperature=0)
            return whole.choices[0].message.content, streamed, completion.choices[0].text

    whole, streamed, completion = asyncio.run(asyncio.wait_for(main(), timeout=180))
    assert whole and streamed == whole
    assert "Paris" in completion


def test_langchain_chat_openai_invoke_stream_and_structured_output(server, model):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key=KEY, model=model, temperature=0, max_tokens=60,
                     max_retries=0, timeout=120)
    answer = llm.invoke("What is the capital of France?")
    assert "Paris" in answer.content and answer.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream("What is the capital of France?"))
    assert len(chunks) > 3 and "".join(c.content for c in chunks) == answer.content
    structured = llm.with_structured_output(Colors).invoke("Name three colors.")
    assert isinstance(structured, Colors) and all(isinstance(c, str) for c in structured.colors)
    raw = llm.with_structured_output(Colors, include_raw=True).invoke("Name three colors.")
    assert raw["parsing_error"] is None and raw["parsed"] == structured


def test_the_single_engine_refuses_a_bad_grammar_and_keeps_serving(client, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=4,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x", "schema": {"type": "nonsense"}}})
    assert caught.value.body["param"] == "response_format" and "nonsense" in caught.value.body["message"]
    reply = client.chat.completions.create(model=model, messages=ask("Give me a JSON object with the name and color "
                                                                     "of a cat."), max_tokens=200, temperature=0,
                                           response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
