"""Saved chats: Markdown and JSON out, JSON back in, bad files refused with a clear message."""

from __future__ import annotations

import json

import pytest

from phi3ov import transcript
from phi3ov.errors import BadInput
from phi3ov.transcript import Transcript


def sample() -> Transcript:
    gen = {"seed": 42, "options": {"max_new_tokens": 64, "temperature": 0.7, "seed": None},
           "stats": {"ttft_ms": 41.5, "tokens_per_s": 63.2, "input_tokens": 30, "output_tokens": 12},
           "finish_reason": "stop"}
    return Transcript(
        messages=[
            {"role": "user", "content": "Show me Python."},
            {"role": "assistant", "content": "Here:\n\n```python\nprint('hi')\n```\n", "generation": gen},
            {"role": "user", "content": "Thanks — ünïcode ✓"},
            {"role": "assistant", "content": "You're welcome."},
        ],
        system_prompt="You are terse.",
        settings={"max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9, "top_k": 50,
                  "repetition_penalty": 1.1, "seed": None},
        model={"name": "SmolLM2-135M-Instruct", "device": "CPU"},
    )


def test_json_round_trip_keeps_everything_needed_to_reproduce():
    t = sample()
    text = transcript.to_json(t)
    data = json.loads(text)
    assert data["format"] == "phi3ov-chat" and data["version"] == 1
    assert data["model"]["name"] == "SmolLM2-135M-Instruct"
    assert data["messages"][1]["generation"]["seed"] == 42
    back = transcript.from_json(text)
    assert back.messages == t.messages
    assert back.system_prompt == "You are terse."
    assert back.settings == t.settings
    assert back.model == t.model
    assert back.generations == {1: t.messages[1]["generation"]}


def test_history_holds_role_and_content_only():
    history = sample().history
    assert all(set(m) == {"role", "content"} for m in history)
    assert history[1]["content"].startswith("Here:")  # no figures or decorations in the text


def test_markdown_reads_as_a_chat():
    md = transcript.to_markdown(sample())
    assert md.startswith("# Chat with SmolLM2-135M-Instruct")
    assert "> You are terse." in md
    assert "### You\n\nShow me Python." in md
    assert "```python\nprint('hi')\n```" in md
    assert "seed 42" in md and "63.2 tokens/s" in md
    assert "Thanks — ünïcode ✓" in md


def test_save_writes_both_files_atomically(tmp_path):
    md, js = transcript.save(sample(), tmp_path / "out", stem="chat")
    assert md.name == "chat.md" and js.name == "chat.json"
    assert transcript.from_json(js.read_bytes()).messages == sample().messages
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chat.json", "chat.md"]  # no temp files left
    transcript.save(sample(), tmp_path / "out", stem="chat")  # overwriting works
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chat.json", "chat.md"]


def test_a_leading_system_message_becomes_the_system_prompt():
    t = transcript.from_json(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}))
    assert t.system_prompt == "Be brief." and t.history == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "no list of messages"),
        ('{"messages": "hi"}', "no list of messages"),
        ('{"format": "other", "messages": []}', "not a saved phi3ov chat"),
        ('{"version": 99, "messages": []}', "newer phi3ov"),
        ('{"messages": [{"role": "tool", "content": "x"}]}', "role 'tool'"),
        ('{"messages": [{"role": "user", "content": [1]}]}', "no text content"),
        ('{"messages": ["hi"]}', "not an object"),
        ('{"system_prompt": 3, "messages": []}', "must be text"),
        ('{"settings": [], "messages": []}', "must be objects"),
    ],
)
def test_bad_files_are_refused_with_a_reason(text, says):
    with pytest.raises(BadInput, match=says):
        transcript.from_json(text)


def test_too_large_files_are_refused():
    with pytest.raises(BadInput, match="too large"):
        transcript.from_json(b" " * (transcript.MAX_BYTES + 1))
