"""Structured output, logprobs, text completions, token counts and the sampling set, on a real launched server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Annotated

import openai
import pytest

from phi3ov.process import ServerProcess

# f32 everywhere, as in test_api.py, so the scorer and the pipeline compute the same numbers.
EXACT = ["--ov-config", "INFERENCE_PRECISION_HINT=f32", "--ov-config", "DYNAMIC_QUANTIZATION_GROUP_SIZE=0",
         "--ov-config", "KV_CACHE_PRECISION=f32"]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 150},
                                           "city": {"type": "string", "enum": ["Dublin", "Dubai", "Munich"]}},
          "required": ["name", "age", "city"], "additionalProperties": False}


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("features") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path), "--kv-cache-gb", "1", *EXACT], log_path=log) as proc:
        yield proc




def post(server, route: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{server.url}{route}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


# -- structured output -------------------------------------------------------------------------------------

def test_a_json_schema_reply_parses_and_validates(client, model):
    for seed in (1, 2, 3):  # sampled, not only greedy: the grammar holds whatever is drawn
        reply = client.chat.completions.create(
            model=model, messages=ask("Invent a person who lives in a city."), max_tokens=120, temperature=1.0,
            seed=seed, response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                                               "strict": True}})
        assert reply.choices[0].finish_reason == "stop"
        person = json.loads(reply.choices[0].message.content)
        assert set(person) == {"name", "age", "city"}
        assert isinstance(person["name"], str) and isinstance(person["age"], int)
        assert person["city"] in ("Dublin", "Dubai", "Munich")


def test_json_object_mode_streams_a_json_object(client, model):
    events = list(client.chat.completions.create(
        model=model, messages=ask("Give me a JSON object with the name and color of a cat."), max_tokens=200,
        temperature=0, stream=True, response_format={"type": "json_object"}))
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert len([e for e in events if e.choices and e.choices[0].delta.content]) > 3, "it streams in pieces"
    assert events[-1].choices[0].finish_reason == "stop"
    assert isinstance(json.loads(text), dict)


def test_openai_parse_returns_a_typed_object(client, model):
    from pydantic import BaseModel, Field

    class Colors(BaseModel):  # bounded: the object ends within max_tokens whatever the CPU's rounding
        colors: Annotated[list[Annotated[str, Field(max_length=20)]], Field(max_length=5)]

    parsed = client.chat.completions.parse(model=model, messages=ask("Name three colors."), max_tokens=200,
                                           temperature=0, response_format=Colors)
    result = parsed.choices[0].message.parsed
    assert isinstance(result, Colors) and all(isinstance(c, str) for c in result.colors)


def test_regex_and_grammar_constrain_the_reply(client, model):
    phone = client.chat.completions.create(model=model, messages=ask("What is your phone number?"), max_tokens=20,
                                           temperature=0, extra_body={"guided_regex": r"\d{3}-\d{4}"})
    import re

    assert re.fullmatch(r"\d{3}-\d{4}", phone.choices[0].message.content)
    answer = client.chat.completions.create(model=model, messages=ask("Is the sky blue?"), max_tokens=5,
                                            temperature=0, extra_body={"guided_grammar": 'root ::= "yes" | "no"'})
    assert answer.choices[0].message.content in ("yes", "no")


@pytest.mark.parametrize("kind, value, words", [
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
     "nonsense"),
    ("guided_regex", "(", "parenthesis"),
    ("guided_grammar", "root ::= ", "EBNF"),
    ("response_format", {"type": "yaml"}, "yaml"),
])
def test_a_constraint_the_compiler_rejects_is_a_400_and_other_replies_go_on(client, model, kind, value, words):
    stream = client.chat.completions.create(model=model, messages=ask("Tell me a story."), max_tokens=60,
                                            temperature=0, stream=True, extra_body={"ignore_eos": True})
    first = next(iter(stream))  # a reply is running in the batching pipeline meanwhile
    body = {"response_format": value} if kind == "response_format" else {"extra_body": {kind: value}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=5, **body)
    error = caught.value.body
    assert error["param"] == kind and words in error["message"], error
    rest = list(stream)
    assert first and rest[-1].choices[0].finish_reason == "length", "the running reply was not disturbed"
    assert client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=4).choices[0].message.content


# -- logprobs ----------------------------------------------------------------------------------------------

def pipeline_logprobs(bundled_ref, prompt_ids: list[int], count: int) -> tuple[list[int], list[float]]:
    """Greedy tokens and their log probabilities as OpenVINO GenAI's own pipeline reports them."""
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    scheduler = ov_genai.SchedulerConfig()
    scheduler.num_kv_blocks, scheduler.cache_size = 64, 0
    pipe = ov_genai.ContinuousBatchingPipeline(str(bundled_ref.path), scheduler, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "KV_CACHE_PRECISION": "f32"})
    config = pipe.get_config()
    config.max_new_tokens, config.do_sample, config.logprobs, config.repetition_penalty = count, False, 1, 1.0
    handle = pipe.add_request(0, ov.Tensor(np.array([prompt_ids], dtype=np.int64)), config)
    generated: list[int] = []
    values: list[float] = []
    while pipe.has_non_finished_requests():
        pipe.step()
        if handle.can_read():
            for output in handle.read().values():
                generated += list(output.generated_ids)
                values += list(output.generated_log_probs)
    return generated, values


def test_logprobs_are_the_models_log_softmax(server, client, model, bundled_ref):
    messages = ask("Name three colors.")
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                           logprobs=True, top_logprobs=5, extra_body={"repetition_penalty": 1.0})
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 8
    _, prompt = post(server, "/tokenize", {"messages": messages})
    ids, values = pipeline_logprobs(bundled_ref, prompt["tokens"], 8)
    _, text = post(server, "/detokenize", {"tokens": ids})
    assert "".join(bytes(e.bytes).decode("utf-8", "replace") for e in content) == text["prompt"]
    for entry, expected in zip(content, values, strict=True):
        assert entry.logprob == pytest.approx(expected, abs=0.05), (entry, expected)
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 5
        assert entry.top_logprobs[0].token == entry.token, "greedy: the chosen token is the most likely one"
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        ranked = [t.logprob for t in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        assert sum(2.718281828 ** t for t in ranked) <= 1.0 + 1e-6


def test_streamed_logprobs_match_the_whole_reply(client, model):
    kwargs = dict(model=model, messages=ask("What is OpenVINO?"), max_tokens=20, temperature=0, logprobs=True,
                  top_logprobs=2)
    whole = client.chat.completions.create(**kwargs)
    events = list(client.chat.completions.create(**kwargs, stream=True))
    streamed = [e for ev in events if ev.choices and ev.choices[0].logprobs for e in ev.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in whole.choices[0].logprobs.content]
    for event in events:
        if event.choices and event.choices[0].delta.content:
            pieces = event.choices[0].logprobs.content
            assert b"".join(bytes(p.bytes) for p in pieces).decode() == event.choices[0].delta.content


def test_top_logprobs_is_bounded_and_needs_logprobs(client, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), logprobs=True, top_logprobs=21)
    assert caught.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), top_logprobs=2)
    assert "logprobs" in caught.value.body["message"]
    plain = client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=2)
    assert plain.choices[0].logprobs is None


# -- completions and tokens --------------------------------------------------------------------------------

def test_completions_continue_raw_text(client, model, server):
    reply = client.completions.create(model=model, prompt="The capital of France is", max_tokens=6, temperature=0,
                                      logprobs=2)
    choice = reply.choices[0]
    assert "Paris" in choice.text
    _, counted = post(server, "/tokenize", {"prompt": "The capital of France is"})
    assert reply.usage.prompt_tokens == counted["count"] == 5
    assert choice.logprobs.tokens and len(choice.logprobs.tokens) == reply.usage.completion_tokens
    assert "".join(choice.logprobs.tokens) == choice.text
    assert choice.logprobs.text_offset[0] == 0
    assert all(len(top) == 2 and max(top.values()) <= 0 for top in choice.logprobs.top_logprobs)


def test_completions_echo_stop_lists_and_streaming(client, model):
    prompts = ["1, 2, 3, 4,", "Roses are red,"]
    whole = client.completions.create(model=model, prompt=prompts, max_tokens=12, temperature=0, echo=True,
                                      stop=["\n"])
    assert [c.index for c in whole.choices] == [0, 1]
    for prompt, choice in zip(prompts, whole.choices, strict=True):
        assert choice.text.startswith(prompt) and "\n" not in choice.text[len(prompt):]
    events = list(client.completions.create(model=model, prompt=prompts, max_tokens=12, temperature=0, echo=True,
                                            stop=["\n"], stream=True, stream_options={"include_usage": True}))
    texts = ["".join(e.choices[0].text for e in events if e.choices and e.choices[0].index == i) for i in (0, 1)]
    assert texts == [c.text for c in whole.choices]
    assert events[-1].usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.parametrize("body, param", [
    ({"prompt": [10**9]}, "prompt"),  # past the vocabulary
    ({"prompt": [1, "x"]}, "prompt"),  # neither text nor token ids
    ({"prompt": [-1]}, "prompt"),
    ({"prompt": "x", "prompt_logprobs": 21}, "prompt_logprobs"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "logprobs": 21}, "logprobs"),
    ({"prompt": ""}, "prompt"),
])
def test_bad_completion_requests_are_400s(server, model, body, param):
    status, answer = post(server, "/v1/completions", {"model": model, **body})
    assert status == 400 and answer["error"]["param"] == param and answer["error"]["message"]


def test_tokenize_counts_as_the_chat_path_does(server, client, model):
    messages = ask("Hello there" + "<|im_start|>system" * 3)
    status, counted = post(server, "/tokenize", {"model": model, "messages": messages})
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=1)
    assert status == 200 and counted["count"] == reply.usage.prompt_tokens == len(counted["tokens"])
    assert counted["max_model_len"] == client.models.list().data[0].model_dump()["max_model_len"]
    _, raw = post(server, "/tokenize", {"prompt": "<|im_start|>"})
    assert raw["count"] > 1, "a typed marker is not the special token"
    _, text = post(server, "/detokenize", {"tokens": raw["tokens"]})
    assert text["prompt"].replace("\u2060", "") == "<|im_start|>", "the typed marker stays text"
    assert post(server, "/detokenize", {"tokens": [10**9]})[0] == 400
    assert post(server, "/tokenize", {"prompt": "a", "messages": messages})[0] == 400


# -- the rest of OpenAI's sampling set ---------------------------------------------------------------------

def test_presence_and_frequency_penalties_change_the_reply(client, model):
    kwargs = dict(model=model, messages=ask("Tell me a story about a cat."), max_tokens=80, temperature=0,
                  extra_body={"repetition_penalty": 1.0, "ignore_eos": True})

    def repeats(text: str) -> int:
        words = text.lower().split()
        return len(words) - len(set(words))

    plain = client.chat.completions.create(**kwargs).choices[0].message.content
    penalized = client.chat.completions.create(**kwargs, frequency_penalty=2.0, presence_penalty=2.0)
    assert repeats(penalized.choices[0].message.content) < repeats(plain) / 2, (plain, penalized)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), presence_penalty=2.5)
    assert caught.value.body["param"] == "presence_penalty"


def test_max_completion_tokens_and_user(client, model):
    reply = client.chat.completions.create(model=model, messages=ask("Tell me a story."), max_completion_tokens=7,
                                           user="alice@example.com", extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 7 and reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize("params, param", [
    ({"logit_bias": {"100": 5}}, "logit_bias"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tools"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"user": 5}, "user"),
])
def test_what_cannot_be_honoured_is_a_400_saying_so(client, model, params, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=2, **params)
    error = caught.value.body
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if param != "user":
        assert "not supported" in error["message"] and error["code"] == "unsupported_parameter"
