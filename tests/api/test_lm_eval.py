"""Scores lm-evaluation-harness reads: prompt log probabilities equal to the model's own log-softmax, the
remote tokenizer's endpoints, and lm-eval itself (from .venv-eval, built by `make test`) running a
multiple-choice task and a perplexity task against a launched server, with token-id and with text prompts."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from support.http import call

from phi3ov.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TEXT = "Alice was beginning to get very tired of sitting by her sister on the bank."


@pytest.fixture(scope="module")
def server(bundled_ref, tmp_path_factory):
    log = tmp_path_factory.mktemp("lm-eval") / "server.log"
    with ServerProcess(["--model", str(bundled_ref.path), "--deterministic"], log_path=log) as proc:
        yield proc


def log_softmax_of(folder: Path, ids: list[int]) -> np.ndarray:
    """The model's log-softmax at every position, computed here in one pass with OpenVINO itself."""
    import openvino as ov
    import openvino_tokenizers  # noqa: F401 - registers the tokenizer ops

    from phi3ov.engine.genai import default_properties
    from phi3ov.settings import default_cache_dir

    compiled = ov.Core().compile_model(str(folder / "openvino_model.xml"), "CPU",
                                       default_properties(default_cache_dir()))
    request = compiled.create_infer_request()
    request.reset_state()
    n = len(ids)
    request.infer({"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, n), dtype=np.int64),
                   "position_ids": np.arange(n, dtype=np.int64)[None], "beam_idx": np.zeros(1, dtype=np.int32)})
    logits = request.get_tensor("logits").data[0].astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_echoed_prompt_logprobs_are_the_models_log_softmax(server, bundled_ref):
    info = call(server, "/tokenizer_info")
    assert info["eos_token"] and info["model_max_length"] > 0 and "chat_template" in info
    ids = call(server, "/tokenize", {"prompt": TEXT, "add_special_tokens": False})["tokens"]
    expected = log_softmax_of(bundled_ref.path, ids)
    for prompt in (ids, TEXT):  # lm-eval's tokenized_requests=True sends ids, False sends the text
        body = {"model": info["model"], "prompt": prompt, "max_tokens": 1, "logprobs": 1, "echo": True,
                "temperature": 0, "prompt_logprobs": 2}
        choice = call(server, "/v1/completions", body)["choices"][0]
        legacy = choice["logprobs"]
        assert choice["text"].startswith(TEXT)
        assert len(legacy["tokens"]) == len(ids) + 1 and legacy["token_logprobs"][0] is None
        assert legacy["top_logprobs"][0] is None
        for i in range(1, len(ids)):
            assert math.isclose(legacy["token_logprobs"][i], expected[i - 1, ids[i]], abs_tol=1e-4)
            best = int(np.argmax(expected[i - 1]))
            assert math.isclose(max(legacy["top_logprobs"][i].values()), expected[i - 1, best], abs_tol=1e-4)
        vllm = choice["prompt_logprobs"]
        assert vllm[0] is None and len(vllm) == len(ids)
        for i in range(1, len(ids)):
            mine = vllm[i][str(ids[i])]
            assert mine["rank"] == 1 + int((expected[i - 1] > expected[i - 1, ids[i]]).sum())
            assert math.isclose(mine["logprob"], legacy["token_logprobs"][i], abs_tol=1e-9)
            assert len(vllm[i]) in (2, 3)  # the prompt's token and the two likeliest (one of them, maybe)


def test_token_id_prompts_take_special_ids_and_refuse_unknown_ones(server):
    info = call(server, "/tokenizer_info")
    ids = call(server, "/tokenize", {"prompt": TEXT})["tokens"]
    body = {"model": info["model"], "prompt": [[info["bos_token_id"], *ids], ids], "max_tokens": 2,
            "temperature": 0, "echo": True}
    choices = call(server, "/v1/completions", body)["choices"]
    assert choices[0]["text"].startswith(info["bos_token"] + TEXT) and choices[1]["text"].startswith(TEXT)
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(server, "/v1/completions", {**body, "prompt": [10**9]})
    error = json.loads(refused.value.read())["error"]
    assert refused.value.code == 400 and error["param"] == "prompt" and "between 0 and" in error["message"]


def test_chat_takes_prompt_logprobs(server):
    info = call(server, "/tokenizer_info")
    messages = [{"role": "user", "content": "Hi"}]
    answer = call(server, "/v1/chat/completions", {"model": info["model"], "messages": messages, "max_tokens": 2,
                                                   "prompt_logprobs": 0})
    counted = call(server, "/tokenize", {"messages": messages})["tokens"]
    scores = answer["prompt_logprobs"]
    assert scores[0] is None and len(scores) == len(counted)
    assert all(str(token) in entry for token, entry in zip(counted[1:], scores[1:], strict=True))


def test_lm_eval_multiple_choice_and_perplexity(bundled_ref):
    from phi3ov.eval.run import evaluate, find_lm_eval

    lm_eval = find_lm_eval(str(ROOT / ".venv-eval/bin/lm_eval"))  # built by `make test`; a clear error if not
    by_ids = evaluate(str(bundled_ref.path), lm_eval, tokenized=True)
    by_text = evaluate(str(bundled_ref.path), lm_eval, tokenized=False)
    for scores in (by_ids, by_text):
        assert scores.items > 50
        assert scores.accuracy > 0.25 + 3 * scores.accuracy_stderr  # chance is 25 %: 4 choices
        assert 1 < scores.word_perplexity < 10_000 and 0 < scores.bits_per_byte < 8
    assert abs(by_ids.accuracy - by_text.accuracy) <= 0.1
    assert math.isclose(by_ids.word_perplexity, by_text.word_perplexity, rel_tol=0.05)
