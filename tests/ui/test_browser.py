"""The chat as a person sees it: the real app, the real model, a real browser (Debian's chromium).

Helpers and fixtures are in browserkit.py. Conversations, editing, stop modes and Arabic are in
test_browser_chats.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from support.browserkit import FIGURES, LONG_PROMPT, SAVED_CHAT, SENTENCE, screenshots_dir

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_enter_sends_reply_streams_then_figures_show(open_chat):
    chat = open_chat()
    chat.box.fill("line one")
    chat.box.press("Shift+Enter")
    chat.box.press_sequentially("line two")
    assert chat.box.input_value() == "line one\nline two" and chat.users() == []  # Shift+Enter: a new line

    chat.settings(max_new_tokens=60, seed=1)
    chat.send(LONG_PROMPT, wait=False)
    assert chat.users() == [LONG_PROMPT]  # shown at once, before the reply
    assert chat.box.input_value() == ""
    chat.wait_idle()

    log = chat.log()
    assert any("Processing prompt" in e["status"] for e in log), "no 'processing prompt' line before the reply"
    lengths = [len(e["bot"]) for e in log if e["bots"] == 1 and e["bot"]]
    assert len(set(lengths)) >= 3 and lengths == sorted(lengths), f"the reply did not grow while streaming: {lengths}"
    assert FIGURES.search(chat.status()), chat.status()
    assert "seed 1" in chat.status() and "60 generated tokens" in chat.status()


def test_stop_keeps_the_partial_reply_and_the_next_message_works(open_chat):
    chat = open_chat()
    chat.settings(seed=1)  # a reply known to run past 400 tokens
    chat.send(LONG_PROMPT, wait=False)
    chat.page.wait_for_function(
        "() => { const b = document.querySelectorAll('[data-testid=\"bot\"]'); "
        "return b.length && b[b.length - 1].innerText.length > 150; }", timeout=60000)
    # live figures while it streams: first token, tokens so far, speed
    chat.page.wait_for_function(
        "() => /Generating.*first token \\d+ ms.*\\d+ tokens.*tokens\\/s/.test("
        "document.querySelector('#status').innerText)", timeout=10000)
    chat.page.locator("#stop").click()
    time.sleep(1.0)
    after_one_second = chat.bots()[-1]
    time.sleep(1.5)
    assert chat.bots()[-1] == after_one_second, "the reply kept growing more than a second after Stop"
    chat.wait_idle(10)
    assert len(after_one_second) > 150 and chat.bots() == [after_one_second]  # the partial reply stays
    assert "stopped" in chat.status()
    generated = int(re.search(r"(\d+) generated tokens", chat.status()).group(1))
    assert generated < 1024  # the backend stopped, not just the screen

    chat.settings(max_new_tokens=16)
    chat.send("Say hello.")
    assert len(chat.bots()) == 2 and FIGURES.search(chat.status())


def test_regenerate_undo_and_clear(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=24)
    chat.send("Tell me a joke.")
    first_seed = re.search(r"seed (\d+)", chat.status()).group(1)

    chat.page.locator("#regenerate").click()
    chat.page.wait_for_function(f"!document.querySelector('#status').innerText.includes('seed {first_seed}')",
                                timeout=10000)
    chat.wait_idle()
    assert chat.users() == ["Tell me a joke."] and len(chat.bots()) == 1  # replaced, not added
    assert f"seed {first_seed}" not in chat.status() and FIGURES.search(chat.status())

    chat.page.locator("#undo").click()
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 0", timeout=5000)
    assert chat.bots() == [] and chat.box.input_value() == "Tell me a joke."  # the text comes back to the box

    chat.send("Tell me a joke.")
    assert len(chat.users()) == 1 and len(chat.bots()) == 1
    chat.page.locator("#clear").click()
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"bot\"]').length === 0", timeout=5000)
    assert chat.users() == [] and chat.status() == ""


def test_system_prompt_and_max_new_tokens_apply_and_are_saved(open_chat):
    chat = open_chat()
    pirate = "You are a pirate. Always answer like a pirate, with 'Arr!'."
    chat.settings(system_prompt=pirate, max_new_tokens=8)
    chat.send("Tell me about the sea.")
    status = chat.status()
    assert "8 generated tokens" in status and "stopped at the length limit" in status
    shown = chat.bots()[-1]
    assert "Stopped at the length limit" in shown  # said under the reply too, with Continue beside it

    saved = chat.save_json()  # the saved chat holds what is needed to reproduce the reply
    assert saved["system_prompt"] == pirate and saved["model"]["name"]
    assert saved["settings"]["max_new_tokens"] == 8
    reply = saved["messages"][1]
    assert reply["role"] == "assistant" and shown.startswith(reply["content"]) and len(reply["content"]) < 80
    assert reply["generation"]["options"]["max_new_tokens"] == 8
    assert f"seed {reply['generation']['seed']}" in status
    # the pirate prompt is longer than the default one, and it reached the model
    prompt_tokens = int(re.search(r"(\d+) prompt", status).group(1))
    assert prompt_tokens == reply["generation"]["stats"]["input_tokens"] > 30


def test_example_prompt_sends_and_code_renders_with_copy_button(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=80, temperature=0)  # greedy: this example starts with a code block
    example = "Write a Python function that checks whether a number is prime."
    chat.page.locator("#chatbot").get_by_text(example).click()
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 1", timeout=5000)
    chat.wait_idle()
    assert chat.users() == [example] and FIGURES.search(chat.status())
    reply = chat.page.get_by_test_id("bot").last
    assert reply.locator("pre code").count() >= 1, reply.inner_html()[:500]
    assert reply.locator(".code_wrap .copy_code_button").count() >= 1
    assert "```" not in reply.inner_text()  # rendered, not shown as markdown source


def test_saved_chat_loads_with_markdown_rendered_and_bad_file_refused(open_chat):
    chat = open_chat()
    chat.load_file(SAVED_CHAT)
    chat.page.locator("#chatbot pre code").wait_for(timeout=10000)
    reply = chat.page.get_by_test_id("bot").last
    assert reply.locator("strong").inner_text() == "two"
    assert reply.locator("li").count() == 2 and reply.locator("em").inner_text() == "in place"
    assert "items[::-1]" in reply.locator("pre code").inner_text()
    assert reply.locator(".copy_code_button").count() == 1
    assert chat.users() == ["How do I reverse a list in Python?"]
    chat.settings()  # open the panel: the saved settings are in place
    assert chat.page.locator("#seed textarea, #seed input").first.input_value() == "7"
    assert chat.page.locator("#system-prompt textarea").input_value().startswith("You are a helpful AI assistant who")
    assert chat.page.locator("#max-new-tokens input[type=number]").input_value() == "256"
    assert "Loaded a chat of 2 messages" in chat.status()

    chat.load_file(name="broken.json", data=b'{"messages": [{"role": "robot", "content": "hi"}]}')
    chat.toast("Could not load this chat").wait_for(timeout=10000)
    assert chat.users() == ["How do I reverse a list in Python?"] and len(chat.bots()) == 1  # nothing lost

    saved = chat.save_json()  # the per-reply seed and figures survive a load and a save
    assert saved["messages"][1]["generation"]["seed"] == 7


def test_two_sessions_at_once_keep_separate_histories(open_chat):
    alice, bob = open_chat(), open_chat()
    for chat in (alice, bob):
        chat.settings(max_new_tokens=16)
    alice.send("My name is Alice.", wait=False)
    bob.send("My name is Bob.", wait=False)
    alice.wait_idle()
    bob.wait_idle()
    alice.send("What is my name?")
    assert alice.users() == ["My name is Alice.", "What is my name?"] and len(alice.bots()) == 2
    assert bob.users() == ["My name is Bob."] and len(bob.bots()) == 1


def test_context_overflow_trims_and_an_overlong_message_keeps_its_text(open_chat, small_server):
    chat = open_chat(small_server.url)
    assert "256 tokens of context" in chat.page.locator("#header").inner_text()
    chat.settings(max_new_tokens=32)
    chat.send("Please remember this: " + SENTENCE * 6)
    assert "no longer fit" not in chat.status()
    chat.send("And this too: " + SENTENCE * 6)
    assert "The 2 oldest messages no longer fit" in chat.status()  # the notice under the reply
    chat.toast("no longer fit the model's context").wait_for(timeout=5000)  # and as a toast

    before = (chat.users(), chat.bots())
    overlong = "Summarize: " + SENTENCE * 30
    chat.box.fill(overlong)
    chat.box.press("Enter")
    chat.toast("This message is too long for the model").wait_for(timeout=10000)
    assert chat.box.input_value() == overlong  # the typed text is not lost
    assert (chat.users(), chat.bots()) == before


def test_screenshots_desktop_and_narrow(open_chat):
    folder = screenshots_dir()
    desktop = open_chat()
    desktop.load_file(SAVED_CHAT)
    desktop.page.locator("#chatbot pre code").wait_for(timeout=10000)
    desktop.settings()  # open the panel, then let the loaded settings land before changing them
    desktop.page.wait_for_function(
        "document.querySelector('#max-new-tokens input[type=range]')?.value === '256'", timeout=10000)
    desktop.settings(max_new_tokens=48, seed=3)
    desktop.page.locator("#settings").get_by_text("Settings", exact=True).first.click()  # fold it again
    desktop.send("What is OpenVINO? Answer in one sentence.")
    desktop.page.locator(".toast-body").first.wait_for(state="detached", timeout=15000)  # toast gone
    desktop.page.screenshot(path=folder / "desktop.png")

    phone = open_chat(viewport=(390, 844))
    phone.load_file(SAVED_CHAT)
    phone.page.locator("#chatbot pre code").wait_for(timeout=10000)
    for element in (phone.box, phone.page.locator("#send")):
        box = element.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, f"{element} is not within the screen: {box}"
        assert element.is_visible()
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
    phone.page.locator(".toast-body").first.wait_for(state="detached", timeout=15000)
    phone.page.screenshot(path=folder / "narrow.png", full_page=True)
    assert (folder / "desktop.png").stat().st_size > 10_000 and (folder / "narrow.png").stat().st_size > 10_000


MARKUP = ['<img src="data:," onerror="window.__xss=1">', "<script>window.__xss=2</script>",
          '<svg onload="window.__xss=3"></svg>', "[click me](javascript:window.__xss=4)",
          '<a href="javascript:window.__xss=5">link</a>']


def test_markup_in_messages_model_output_and_loaded_chats_never_runs(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=8)
    chat.send(" ".join(MARKUP))
    saved = {"messages": [{"role": "user", "content": m} for m in MARKUP[:2]]
             + [{"role": "assistant", "content": " ".join(MARKUP)}]}
    chat.load_file(name="markup.json", data=json.dumps(saved).encode())
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 2", timeout=10000)
    for link in chat.page.locator("#chatbot a").all():  # a link may be clicked: it must not run script
        link.click(modifiers=["Alt"], timeout=2000, no_wait_after=True)
    time.sleep(0.5)
    assert chat.page.evaluate("window.__xss") is None, "markup in the chat ran script"
    dangerous = chat.page.evaluate("""() => [...document.querySelectorAll('#chatbot *')].filter(e =>
        e.tagName === 'SCRIPT' || [...e.attributes].some(a => a.name.startsWith('on')) ||
        (e.getAttribute('href') || '').trim().toLowerCase().startsWith('javascript:')).length""")
    assert dangerous == 0
    assert "click me" in " ".join(chat.bots())  # the reply's text is there, its markup inert
    shown = " ".join(chat.users() + chat.bots())  # and the markup reads as the characters themselves
    for markup in MARKUP[:3]:
        assert markup in shown, f"{markup!r} is not shown as text"
