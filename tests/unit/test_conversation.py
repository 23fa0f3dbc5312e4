"""Message normalisation and context fitting (pure logic; the real tokenizer is tested in test_engine)."""

import pytest

from phi3ov import conversation
from phi3ov.errors import BadInput, ContextOverflow


def words(messages):
    """A stand-in token counter for the pure fitting logic: one token per word plus 4 per message."""
    return sum(len(m["content"].split()) + 4 for m in messages)


def test_text_parts_are_flattened():
    assert conversation.text_of([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert conversation.text_of({"type": "text", "text": "x"}) == "x"
    assert conversation.text_of(None) == ""


def test_non_text_content_is_refused_clearly():
    with pytest.raises(BadInput, match="text only.*'image_url'"):
        conversation.text_of([{"type": "image_url", "image_url": {"url": "data:..."}}])


def test_notices_and_unknown_roles():
    msgs = [{"role": "assistant", "content": "shown only", "metadata": {"title": "notice"}},
            {"role": "user", "content": "hi"}]
    assert conversation.normalize(msgs) == [{"role": "user", "content": "hi"}]
    with pytest.raises(BadInput, match="role 'tool'"):
        conversation.normalize([{"role": "tool", "content": "x"}])


def test_build_puts_system_prompt_first_once():
    history = [{"role": "system", "content": "old"}, {"role": "user", "content": "a"},
               {"role": "assistant", "content": "b"}]
    built = conversation.build("new system", history, "c")
    assert [m["role"] for m in built] == ["system", "user", "assistant", "user"]
    assert built[0]["content"] == "new system" and built[-1]["content"] == "c"
    assert history[0]["content"] == "old"  # the caller's history is not mutated


def chat(turns: int):
    msgs = [{"role": "system", "content": "be brief"}]
    for i in range(turns):
        msgs += [{"role": "user", "content": f"question {i} " + "w " * 20},
                 {"role": "assistant", "content": f"answer {i} " + "w " * 20}]
    return msgs + [{"role": "user", "content": "newest question"}]


def test_fit_keeps_everything_that_fits():
    msgs = chat(2)
    fitted = conversation.fit(msgs, words, 1000, 100)
    assert fitted.messages == msgs and fitted.dropped == 0 and fitted.notice is None


def test_fit_drops_oldest_turns_keeping_system_and_newest():
    msgs = chat(10)
    fitted = conversation.fit(msgs, words, 200, 50)
    assert fitted.dropped > 0 and fitted.prompt_tokens <= 150
    assert fitted.messages[0] == msgs[0]
    assert fitted.messages[-1] == msgs[-1]
    assert fitted.messages[1]["role"] == "user"  # history never resumes mid-turn
    assert fitted.messages[1:] == msgs[len(msgs) - len(fitted.messages) + 1:]
    # the fewest drops: keeping one more whole turn would not fit
    one_more_turn = msgs[:1] + msgs[-(len(fitted.messages) - 1 + 2):]
    assert words(one_more_turn) > 150
    assert "oldest" in fitted.notice


def test_a_message_too_long_alone_is_an_error_that_says_what_to_do():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "w " * 500}]
    with pytest.raises(ContextOverflow, match="too long.*Shorten the message"):
        conversation.fit(msgs, words, 300, 100)
    assert len(msgs) == 2  # nothing lost


def test_empty_message_is_refused():
    with pytest.raises(BadInput, match="empty"):
        conversation.fit([{"role": "user", "content": "   "}], words, 100, 10)
