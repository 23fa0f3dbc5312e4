"""The speed features on the real bundled model: prompt lookup, KV cache sizing, exports compared,
and the peers benchmark's own checks. Figures are printed by `phi3ov bench` / `phi3ov compare`;
these tests check that the machinery is right, never how fast it is."""

from __future__ import annotations

import math
import sys

import pytest

from phi3ov.options import GenerationOptions

COPY = ("Return this text unchanged, word for word:\n\nThe quick brown fox jumps over the lazy dog. "
        "A journey of a thousand miles begins with a single step. The early bird catches the worm.")


def ask(content: str) -> list[dict]:
    return [{"role": "system", "content": "You are a helpful AI assistant."}, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def lookup(bundled_ref):
    from phi3ov.engine.batched import BatchedEngine

    engine = BatchedEngine(bundled_ref, max_num_seqs=2, kv_cache_gb=0.5, prompt_lookup=True)
    yield engine
    engine.close()


def test_prompt_lookup_takes_several_tokens_per_step_when_the_reply_copies_the_prompt(lookup):
    options = GenerationOptions(temperature=0, max_new_tokens=48, repetition_penalty=1.0)
    reply = lookup.chat(ask(COPY), options)
    text = "".join(reply)
    assert text.strip() and reply.stats.output_tokens > 10
    assert reply.stats.steps < reply.stats.output_tokens, "accepted candidates: several tokens in one step"
    again = lookup.chat(ask(COPY), options)
    assert "".join(again) == text, "greedy replies with lookup are deterministic"


def test_prompt_lookup_can_be_turned_down_per_reply(lookup):
    on = lookup.chat(ask(COPY), GenerationOptions(temperature=0, max_new_tokens=48, repetition_penalty=1.0))
    off = lookup.chat(ask(COPY), GenerationOptions(temperature=0, max_new_tokens=48, repetition_penalty=1.0,
                                                   prompt_lookup=False))
    list(on), list(off)
    # Turned down, a step checks at most one copied token: at most two tokens come out of a step.
    assert off.stats.steps * 2 >= off.stats.output_tokens > 0
    assert on.stats.steps < on.stats.output_tokens


def test_without_prompt_lookup_every_step_gives_one_token(bundled_ref):
    from phi3ov.engine.batched import BatchedEngine

    engine = BatchedEngine(bundled_ref, max_num_seqs=1, kv_cache_gb=0.5)
    try:
        reply = engine.chat(ask(COPY), GenerationOptions(temperature=0, max_new_tokens=24))
        list(reply)
        assert reply.stats.steps == reply.stats.output_tokens
    finally:
        engine.close()


def test_kv_cache_is_sized_from_the_models_own_cache_variables(bundled_ref):
    from phi3ov.engine.batched import KV_BLOCK_TOKENS, kv_bytes_per_token, kv_cache_blocks

    # SmolLM2-135M: 30 layers, K and V, 3 KV heads of 64, 2 bytes each.
    assert kv_bytes_per_token(bundled_ref.path) == 30 * 2 * 3 * 64 * 2
    assert kv_cache_blocks(bundled_ref.path, 4, 2048, None) == 4 * 2048 // KV_BLOCK_TOKENS  # fits in memory
    capped = kv_cache_blocks(bundled_ref.path, 8, 8192, 0.1)  # 0.1 GB holds ~4660 tokens, not 65536
    assert capped == int(0.1 * 2**30 // (30 * 2 * 3 * 64 * 2)) // KV_BLOCK_TOKENS


def test_compare_logits_agree_with_the_pipelines_greedy_choice(bundled_ref):
    import openvino_genai as ov_genai

    from phi3ov.bench.compare import logits, quality, text_ids

    ids = text_ids(bundled_ref.path, "The capital of France is Paris. The capital of Italy is", 64)
    out = logits(bundled_ref.path, ids)
    assert out.shape[0] == len(ids)
    perplexity, predicted = quality(out, ids)
    assert 1 < perplexity < 1000
    pipe = ov_genai.LLMPipeline(str(bundled_ref.path), "CPU")
    config = pipe.get_generation_config()
    config.max_new_tokens, config.do_sample = 1, False
    import numpy as np
    import openvino as ov

    result = pipe.generate(ov_genai.TokenizedInputs(ov.Tensor(np.array([ids], dtype=np.int64)),
                                                    ov.Tensor(np.ones((1, len(ids)), dtype=np.int64))), config)
    assert int(predicted[-1]) == int(result.tokens[0][0]), "the next token the pipeline picks is the logits' argmax"


def test_compare_prints_every_export_with_figures(bundled_ref, tmp_path, capsys):
    from phi3ov.cli import main

    twin = tmp_path / "twin"
    twin.mkdir()
    for f in bundled_ref.path.iterdir():  # the same weights under another name: 100 % agreement
        (twin / f.name).symlink_to(f)
    assert main(["compare", str(bundled_ref.path), str(twin), "--runs", "1", "--rounds", "1",
                 "--max-new-tokens", "8", "--max-text-tokens", "64", "--json"]) == 0
    import json

    figures = json.loads(capsys.readouterr().out)
    rows = figures["exports"]
    assert [r["export"] for r in rows] == [bundled_ref.path.name, "twin"]
    assert rows[0]["perplexity"] == rows[1]["perplexity"] and rows[1]["top1_agreement"] == 1.0
    assert all(r["decode_tokens_per_s"] > 0 and r["size_mb"] > 10 and r["weights"].startswith("OpenVINO u4")
               for r in rows)


def test_peers_feed_every_engine_the_same_ids(bundled_ref):
    from phi3ov.bench.app import PROMPT
    from phi3ov.bench.layers import chats
    from phi3ov.bench.peers import prompt_ids

    ids, text = prompt_ids(bundled_ref.path, chats(2, PROMPT))
    assert len(ids) == 3 and len({len(x) for x in ids}) == 1 and ids[0] != ids[1]
    assert text.startswith("<|im_start|>system\nConversation 1-0.")  # run 1, layer 0


def test_peers_without_llama_cpp_say_how_to_get_it(monkeypatch, tmp_path):
    from phi3ov.bench.peers import PeersMissing, peers_python

    monkeypatch.setenv("PHI3OV_PEERS_PYTHON", sys.executable)  # phi3ov's own Python: no llama_cpp there
    with pytest.raises(PeersMissing, match="make peers"):
        peers_python()
    monkeypatch.setenv("PHI3OV_PEERS_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(PeersMissing, match="make peers"):
        peers_python()


def test_weight_format_reads_the_ir(bundled_ref):
    from phi3ov.bench.peers import weight_format

    text = weight_format(bundled_ref.path)
    shares = [float(part.split()[-1].rstrip("%")) for part in text.removeprefix("OpenVINO ").split(" · ")]
    assert text.startswith("OpenVINO u4") and math.isclose(sum(shares), 100, abs_tol=3)


def test_compare_measures_each_export_at_each_inference_precision(bundled_ref, capsys):
    from phi3ov.cli import main

    assert main(["compare", str(bundled_ref.path), "--precision", "f32,bf16", "--runs", "1", "--rounds", "1",
                 "--max-new-tokens", "4", "--max-text-tokens", "64", "--long-prompt-tokens", "96", "--json"]) == 0
    import json

    figures = json.loads(capsys.readouterr().out)
    rows = figures["exports"]
    assert [(r["export"], r["precision_asked"]) for r in rows] == [(bundled_ref.path.name, "f32"),
                                                                    (bundled_ref.path.name, "bf16")]
    assert rows[0]["precision"] == "f32" and rows[0]["reference"] and figures["reference_precision"] == "f32"
    assert rows[1]["precision"] in ("bf16", "f32")  # f32 where the CPU has no bf16 units
    assert figures["long_prompt_tokens"] > figures["prompt_tokens"] > 0
    for r in rows:
        assert math.isfinite(r["perplexity"]) and r["perplexity"] > 1
        assert 0 <= r["top1_agreement"] <= 1 and r["decode_tokens_per_s"] > 0
        assert r["ttft_ms"] > 0 and r["ttft_long_ms"] > 0
    assert rows[0]["top1_agreement"] == 1.0, "the reference agrees with itself"


def test_compare_refuses_an_unknown_precision():
    from phi3ov.bench.compare import parse_precisions
    from phi3ov.errors import BadOptions

    assert parse_precisions(None) == [None] and parse_precisions("f32, BF16,f32") == ["f32", "bf16"]
    with pytest.raises(BadOptions, match="--precision"):
        parse_precisions("f32,int8")


@pytest.mark.parametrize("tokens", [512, 2000])
def test_the_peers_long_prompt_has_about_the_tokens_asked_for(bundled_ref, engine, tokens):
    from phi3ov.bench.peers import long_prompt

    text = long_prompt(bundled_ref.path, tokens)
    counted = engine.count_prompt([{"role": "user", "content": text}])
    assert tokens * 0.9 <= len(counted) <= tokens * 1.1


@pytest.mark.slow
@pytest.mark.export
def test_peers_rss_is_each_workers_own_and_follows_its_model(bundled_ref, qwen_export):
    """Two raw openvino-genai workers on different models report different peaks, each its own process's: the
    bundled SmolLM2 (88 MB of weights) needs far more than a tiny Qwen2."""
    from phi3ov.bench.peers import Contender, measure, numbered_chats, prompt_ids
    peaks = {}
    for name, folder in (("bundled", bundled_ref.path), ("tiny", qwen_export.folder)):
        chats = numbered_chats(1, "Say hello.")
        ids, text = prompt_ids(folder, chats)
        result = measure(Contender("openvino-genai LLMPipeline", name, "openvino", folder), ids, chats, text, 4)
        peaks[name] = result["peak_rss_mb"]
    assert 0 < peaks["tiny"] < peaks["bundled"] - 50, peaks  # ru_maxrss gave both this process's own peak


def test_the_cpu_quantizes_activations_in_the_weights_own_groups(bundled_ref):
    from phi3ov.engine import LocalEngine, model_properties
    from phi3ov.models import weight_group_size

    assert weight_group_size(bundled_ref.path) == 32  # the GGUF's Q4_1 blocks of 32
    assert model_properties(bundled_ref.path, "CPU") == {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}
    assert model_properties(bundled_ref.path, "GPU") == {}
    unloaded = object.__new__(LocalEngine)  # only the properties are worked out, no pipeline is built
    chosen = unloaded._properties(bundled_ref, "CPU", {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}, None, False)
    assert chosen["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == "0"  # what the user sets (--ov-config) wins
