"""GenerationOptions.parse: the one place a generation option's value is checked (sliders, API, CLI)."""

from __future__ import annotations

import pytest

from phi3ov.errors import BadOptions
from phi3ov.options import BOUNDS, SEED_MAX, GenerationOptions


def test_defaults_are_the_sliders_defaults():
    options = GenerationOptions.parse()
    for name, bound in BOUNDS.items():
        assert getattr(options, name) == bound.default
    assert options.seed is None and not options.greedy
    assert GenerationOptions.parse(temperature=0).greedy


@pytest.mark.parametrize(("values", "message"), [
    ({"temperature": 3}, "`temperature` must be between 0 and 2, got 3."),
    ({"max_new_tokens": 1.5}, "`max_new_tokens` must be a whole number, got 1.5."),
    ({"top_p": "high"}, "`top_p` must be a number, got 'high'."),
    ({"seed": 1.5}, "`seed` must be a whole number, got 1.5."),
    ({"seed": -1}, f"`seed` must be between 0 and {SEED_MAX}, got -1."),
    ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` takes at most 4 strings."),
    ({"logprobs": "yes"}, "`logprobs` must be true or false, got 'yes'."),
    ({"colour": 1}, "Unknown generation option(s): colour."),
])
def test_bad_values_are_refused_with_the_option_named(values, message):
    with pytest.raises(BadOptions) as err:
        GenerationOptions.parse(**values)
    assert str(err.value).startswith(message)


def test_the_ui_clamps_what_the_api_refuses():
    options = GenerationOptions.parse(clamp=True, temperature=5, max_new_tokens=10**6, seed=SEED_MAX + 3)
    assert options.temperature == BOUNDS["temperature"].maximum
    assert options.max_new_tokens == BOUNDS["max_new_tokens"].maximum
    assert options.seed == 2  # wrapped into range, never refused
    assert GenerationOptions.parse(seed="7").seed == 7 and GenerationOptions.parse(stop="END").stop == ("END",)
