"""BatchedEngine: many replies at once from one ContinuousBatchingPipeline, on the real model."""

from __future__ import annotations

import time

import pytest
from support.bounded import Threads

from phi3ov.options import GenerationOptions

SYSTEM = {"role": "system", "content": "You are a helpful AI assistant."}


def ask(content: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def batched(bundled_ref):
    from phi3ov.engine.batched import BatchedEngine

    engine = BatchedEngine(bundled_ref, max_num_seqs=4, kv_cache_gb=1)
    yield engine
    engine.close()


def test_context_length_caps_the_model_and_sizes_the_kv_cache(bundled_ref):
    from phi3ov.engine.batched import KV_BLOCK_TOKENS, BatchedEngine

    engine = BatchedEngine(bundled_ref, max_num_seqs=2, context_length=256)
    try:
        assert engine.context_length == 256  # from the first engine on (--context-length), not set afterwards
        assert engine.scheduler_config.num_kv_blocks == 2 * 256 // KV_BLOCK_TOKENS  # two whole capped contexts
    finally:
        engine.close()


def test_the_context_served_is_what_the_kv_cache_holds_and_long_chats_fit_it(bundled_ref):
    from phi3ov.engine.batched import KV_BLOCK_TOKENS, BatchedEngine, kv_bytes_per_token

    # A KV cache of 1024 tokens, far below SmolLM2's 8192: a 128k model on a small machine is the same story.
    gb = 1024 * kv_bytes_per_token(bundled_ref.path) / 2**30
    engine = BatchedEngine(bundled_ref, max_num_seqs=2, kv_cache_gb=gb)
    try:
        assert engine.context_length == engine.scheduler_config.num_kv_blocks * KV_BLOCK_TOKENS <= 1024
        long_chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 200} for i in range(15)]
        reply = engine.chat(long_chat, GenerationOptions(temperature=0, max_new_tokens=8))
        assert reply.fitted.dropped > 0 and reply.fitted.prompt_tokens + 8 <= engine.context_length
        "".join(reply)  # generated to the end, not failing inside the pipeline
        assert reply.finish_reason in ("stop", "length") and reply.stats.output_tokens > 0
    finally:
        engine.close()


def test_settings_reach_the_pipeline(batched):
    assert batched.capabilities.max_concurrency == 4
    assert batched.scheduler_config.max_num_seqs == 4
    assert batched.scheduler_config.enable_prefix_caching


def test_a_lone_reply_equals_the_single_pipeline(bundled_ref, engine, greedy):
    from phi3ov.engine.batched import BatchedEngine

    messages = ask("What is OpenVINO?")
    single = engine.chat(messages, greedy)  # deterministic (conftest): no prefix cache, one reply at a time
    list(single)
    exact = BatchedEngine(bundled_ref, max_num_seqs=2, kv_cache_gb=1, deterministic=True)
    try:
        reply = exact.chat(messages, greedy)
        chunks = list(reply)
    finally:
        exact.close()
    assert len(chunks) > 5 and reply.text == single.text
    assert reply.stats.output_tokens == single.stats.output_tokens
    assert reply.stats.ttft_ms > 0 and reply.stats.tokens_per_s > 0


def test_stopping_one_reply_leaves_the_others_running(batched):
    options = GenerationOptions(temperature=0, max_new_tokens=40)
    prompts = ["Name three colors.", "Write a haiku about the sea."]
    victim = batched.chat(ask("Tell me a very long story."), GenerationOptions(temperature=0, max_new_tokens=2000))
    others = {p: batched.chat(ask(p), options) for p in prompts}
    pieces = iter(victim)
    first = [next(pieces) for _ in range(3)]
    with Threads(timeout=180) as threads:
        for reply in others.values():
            threads.start(list, reply)
        victim.stop()
        rest = list(pieces)
    assert victim.finish_reason == "cancelled"
    assert victim.stats.output_tokens < 100 and victim.text == "".join(first + rest)
    for reply in others.values():  # completed; reply equality under batching is tested through the API
        assert reply.finish_reason in ("stop", "length") and reply.text
        assert reply.stats.output_tokens == 40 or reply.finish_reason == "stop"
    assert batched.running == 0


def test_length_and_stop_strings(batched):
    short = batched.chat(ask("Tell me a story."), GenerationOptions(temperature=0, max_new_tokens=5))
    list(short)
    assert short.finish_reason == "length" and short.stats.output_tokens == 5
    question = ask("What is OpenVINO?")
    text = "".join(batched.chat(question, GenerationOptions(temperature=0, max_new_tokens=40)))
    stop = text.split()[5]  # a word from the middle of the free reply
    cut = batched.chat(question, GenerationOptions(temperature=0, max_new_tokens=40, stop=(stop,)))
    assert "".join(cut) == text[: text.index(stop)].rstrip()  # the token " word" goes with its space
    assert cut.finish_reason == "stop"


def test_sampling_with_a_seed_repeats(batched):
    options = GenerationOptions(temperature=0.9, max_new_tokens=16, seed=42)
    first = "".join(batched.chat(ask("Invent a name for a cat."), options))
    second = "".join(batched.chat(ask("Invent a name for a cat."), options))
    assert first == second


def test_a_reply_alone_is_handed_over_to_the_steps_when_a_second_one_arrives(batched):
    # A reply alone runs on the pipeline's own loop; a second one makes it pause and go on in the driver's steps,
    # batched with the newcomer: the newcomer's short reply ends long before the first one's (not queued behind it).
    long = GenerationOptions(temperature=0, max_new_tokens=120, repetition_penalty=1.0, ignore_eos=True)
    short = GenerationOptions(temperature=0, max_new_tokens=12, repetition_penalty=1.0, ignore_eos=True)
    before = batched.handovers
    first = batched.chat(ask("Tell me a story about a lighthouse."), long)
    pieces = iter(first)
    head = [next(pieces) for _ in range(8)]
    assert batched.running == 1
    second = batched.chat(ask("Name three colors."), short)
    ended: dict[str, float] = {}

    def read(name, reply, it):
        list(it)
        ended[name] = time.perf_counter()

    with Threads(timeout=180) as threads:
        threads.start(read, "second", second, iter(second))
        rest: list[str] = []
        for piece in pieces:
            rest.append(piece)
        ended["first"] = time.perf_counter()
    assert batched.handovers == before + 1, "the reply alone went on in the driver's steps"
    assert ended["second"] < ended["first"], "the second reply ran beside the first, not after it"
    assert first.finish_reason == "length" and first.stats.output_tokens == 120
    assert first.text == "".join(head + rest) and len(first.text) > len("".join(head))
    assert second.finish_reason == "length" and second.stats.output_tokens == 12 and second.text
    assert first.stats.steps == 120 and first.stats.ttft_ms > 0
    assert batched.running == 0
