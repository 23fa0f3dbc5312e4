"""`phi3ov bench`'s rounds and figures: the order layers run in, and the comparisons with the best bare layer."""

from __future__ import annotations

import pytest

from phi3ov.bench.layers import measure_layers, summarize


def test_rounds_alternate_direction_leave_out_the_warm_up_and_give_each_layer_its_own_chats():
    calls: list[tuple[str, str]] = []

    def layer(name: str):
        def run(messages: list[dict], n: int) -> tuple[float, float]:
            assert n == 16
            calls.append((name, messages[0]["content"]))
            return float(len(calls)), 10.0
        return run

    rows = measure_layers({"a": layer("a"), "b": layer("b"), "c": layer("c")}, runs=3, prompt="Hi", n=16)
    assert [name for name, _ in calls] == list("abc" "cba" "abc" "cba")
    assert {name: [r[0] for r in runs] for name, runs in rows.items()} == {
        "a": [6.0, 7.0, 12.0], "b": [5.0, 8.0, 11.0], "c": [4.0, 9.0, 10.0]}  # round 0 (calls 1-3) left out
    assert len({system for _, system in calls}) == len(calls), "no run finds another's prompt in a prefix cache"


def test_the_best_bare_layer_is_picked_per_figure_and_paired_figures_compare_within_each_round():
    rows = {  # round 2 ran slow for every layer, as a busy moment of the machine does
        "bare, fast first token": [(100.0, 40.0), (300.0, 20.0), (100.0, 40.0)],
        "bare, fast decode": [(120.0, 50.0), (320.0, 25.0), (120.0, 50.0)],
        "app": [(110.0, 49.0), (330.0, 24.5), (140.0, 48.0)],
    }
    figures = summarize(rows, ["bare, fast first token", "bare, fast decode"])
    app = figures["app"]
    assert (app["ttft_ms"], app["tokens_per_s"]) == (140.0, 48.0)
    assert app["added_ttft_vs_best_bare_ms"] == 40.0  # 140 - 100: the first token against the fastest bare one
    assert app["tokens_per_s_vs_best_bare"] == pytest.approx(48 / 50)  # decode against the fastest bare decode
    assert app["paired_added_ttft_ms"] == 30.0  # median of +10, +30, +40
    assert app["paired_tokens_per_s_vs_best_bare"] == pytest.approx(0.98)  # median of 0.98, 0.98, 0.96
    best = figures["bare, fast decode"]
    assert best["tokens_per_s_vs_best_bare"] == best["paired_tokens_per_s_vs_best_bare"] == 1.0


def test_a_layer_that_gave_no_decode_figure_compares_as_zero_not_as_an_error():
    rows = {"bare": [(100.0, 0.0)], "app": [(110.0, 0.0)]}
    assert summarize(rows, ["bare"])["app"]["paired_tokens_per_s_vs_best_bare"] == 0.0


def test_a_shape_build_without_its_tools_says_what_to_install_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    from phi3ov.bench import shapes
    from phi3ov.errors import BadOptions

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentencepiece" else real(name, *a))
    with pytest.raises(BadOptions) as raised:
        shapes.build("phi3-mini", tmp_path, gguf=False, log=lambda _line: None)
    assert "sentencepiece" in raised.value.message and "make .venv/.bench" in raised.value.hint
    assert list(tmp_path.iterdir()) == [], "nothing written"
