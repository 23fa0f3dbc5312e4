"""The chat's settings reach the handlers by component, never by position: a new control shifts nothing."""

from __future__ import annotations

import random

import gradio as gr

from phi3ov.options import BOUNDS
from phi3ov.ui.actions import Actions
from phi3ov.ui.layout import Parts


def panel() -> Parts:
    c = Parts()
    with gr.Blocks():
        c.system_prompt = gr.Textbox()
        c.sliders = [gr.Slider(b.minimum, b.maximum) for b in BOUNDS.values()]
        c.seed, c.lookup, c.as_json, c.schema = gr.Textbox(), gr.Checkbox(), gr.Checkbox(), gr.Textbox()
        c.extra = gr.Slider(0, 1)  # a control added later, which the handlers do not read yet
    return c


def test_each_setting_is_read_from_its_own_component_in_any_order():
    c = panel()
    values = {"max_new_tokens": 77, "temperature": 0.3, "top_p": 0.5, "top_k": 9, "repetition_penalty": 1.2}
    data = {slider: values[name] for name, slider in zip(BOUNDS, c.sliders, strict=True)}
    data.update({c.system_prompt: "Be brief.", c.seed: "42", c.lookup: False, c.as_json: True, c.schema: "",
                 c.extra: 0.9})
    shuffled = dict(random.Random(1).sample(list(data.items()), len(data)))  # the order a set of inputs arrives in
    system, options = Actions(c, engine=None, settings=None).read_settings(shuffled)
    assert system == "Be brief."
    assert (options.max_new_tokens, options.temperature, options.top_p, options.top_k,
            options.repetition_penalty) == (77, 0.3, 0.5, 9, 1.2)
    assert options.seed == 42 and options.prompt_lookup is False and options.constraint is not None
