"""The chat people keep open: conversations kept in the browser, editing, both stop modes, Arabic.

The real app and model in Chromium (fixtures in browserkit.py). Each browser context is one
browser profile with its own local storage.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from support.browserkit import LONG_PROMPT, Chat, screenshots_dir, start_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARABIC = "مرحبا! اكتب جملة قصيرة عن القاهرة."
ENGLISH = "Hello! Write one short sentence about Cairo."
ARABIC_REPLY = ("القاهرة هي عاصمة مصر وأكبر مدنها، وتقع على ضفاف نهر النيل.\n\n"
                "- الأهرامات في الجيزة\n- المتحف المصري\n\n```python\nprint(\"Cairo\")\n```")


def chats(chat: Chat) -> list[str]:
    return chat.page.locator("#chats label").all_inner_texts()


def wait_chats(chat: Chat, count: int) -> list[str]:
    chat.page.wait_for_function(f"document.querySelectorAll('#chats label').length === {count}", timeout=15000)
    return chats(chat)


def reload(chat: Chat) -> None:
    chat.page.reload()
    chat.box.wait_for()


def new_chat(chat: Chat) -> None:
    chat.page.locator("#new-chat").click()
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 0", timeout=10000)


def wait_text(chat: Chat, text: str) -> None:
    chat.page.get_by_test_id("user").filter(has_text=text).first.wait_for(timeout=15000)


def wait_streaming(chat: Chat, chars: int = 40) -> None:
    chat.page.wait_for_function(
        f"(document.querySelector('[data-testid=\"bot\"]')?.innerText || '').length > {chars}", timeout=60000)


def test_reload_and_restart_keep_the_list_the_open_chat_and_its_settings(open_chat, tmp_path_factory):
    srv = start_server(tmp_path_factory)  # its own server, restarted on the same port below
    try:
        chat = open_chat(srv.url)
        chat.settings(max_new_tokens=12, system_prompt="You are a pirate.")
        chat.send("First chat: hello")
        new_chat(chat)
        chat.settings(system_prompt="You are a poet.")
        chat.send("Second chat: hello")
        assert wait_chats(chat, 2) == ["Second chat: hello", "First chat: hello"]  # newest first
        first_reply = None

        reload(chat)  # a reload brings back the list and the open chat
        assert wait_chats(chat, 2) == ["Second chat: hello", "First chat: hello"]
        wait_text(chat, "Second chat: hello")
        assert chat.users() == ["Second chat: hello"] and len(chat.bots()) == 1
        chat.page.locator("#chats label").filter(has_text="First chat").click()  # switch
        wait_text(chat, "First chat: hello")
        first_reply = chat.bots()
        assert chat.users() == ["First chat: hello"] and len(first_reply) == 1
        chat.settings()
        assert chat.page.locator("#system-prompt textarea").input_value() == "You are a pirate."
        assert chat.page.locator("#max-new-tokens input[type=number]").input_value() == "12"

        srv.stop()  # a restarted server still reads what the browser keeps (the key is in the cache folder)
        srv.start()
        chat.page.close()  # a closed tab, then a new one
        chat.page = chat.context.new_page()
        chat.page.on("console", chat._console)
        chat.page.goto(srv.url)
        chat.box = chat.page.locator("#message textarea")
        chat.box.wait_for()
        assert wait_chats(chat, 2)[1] == "First chat: hello"
        wait_text(chat, "First chat: hello")  # the chat that was open
        assert chat.bots() == first_reply

        other = open_chat(srv.url)  # another browser profile never sees this list
        time.sleep(1)
        assert chats(other) == [] and other.users() == []
    finally:
        srv.stop()


def test_a_reply_cut_short_by_a_reload_keeps_its_text_marked_interrupted(open_chat):
    chat = open_chat()
    chat.settings(seed=1)
    chat.send(LONG_PROMPT, wait=False)
    wait_streaming(chat, 80)
    time.sleep(1.5)  # the reply in flight is written to the browser about once a second
    partial = chat.bots()[0]
    logged, left = len(chat.errors), chat.loads
    reload(chat)
    # Leaving a page mid-stream breaks its stream: the page left logs the aborted connection, and Gradio's client
    # may then fail on an update that was still waiting to be applied (its diff base is gone with the stream).
    # Expected of the page left; the page loaded after it must log nothing.
    chat.forget_errors_of_load(left, since=logged)
    wait_text(chat, LONG_PROMPT)
    kept = chat.bots()[0]
    assert "Interrupted" in kept
    assert kept.split("⚠")[0].strip()[:60] == partial.strip()[:60]  # the text written so far is there


# What a browser does to a tab sent to the background, acted out in this headless one (whose tabs are always shown):
# the page reads "hidden", and its timers wait until it is shown again; each timer also waits 20 ms, as behind a
# main thread busy drawing a long reply, so that a tab is often hidden with an update still waiting on one.
BACKGROUND_TAB = """() => {
  const set = window.setTimeout.bind(window), clear = window.clearTimeout.bind(window);
  const held = [], cancelled = new Set();
  let hidden = false;
  Object.defineProperty(Document.prototype, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
  Object.defineProperty(Document.prototype, 'hidden', {configurable: true, get: () => hidden});
  window.setTimeout = (fn, ms, ...args) => {
    const id = set(function go() {
      if (cancelled.delete(id)) return;
      if (hidden) held.push(go); else if (typeof fn === 'function') fn(...args);
    }, Math.max(Number(ms) || 0, 20));
    return id;
  };
  window.clearTimeout = id => { cancelled.add(id); clear(id); };
  window.showTab = shown => {
    hidden = !shown;
    document.dispatchEvent(new Event('visibilitychange'));
    if (shown) held.splice(0).forEach(go => go());
  };
}"""


def test_a_reply_reads_in_order_after_its_tab_went_to_the_background_and_back(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=400, seed=1)
    chat.page.evaluate(BACKGROUND_TAB)
    chat.send(LONG_PROMPT, wait=False)
    wait_streaming(chat, 20)
    shown = []
    for _ in range(15):
        chat.page.evaluate("() => showTab(false)")
        chat.page.wait_for_timeout(120)
        chat.page.evaluate("() => showTab(true)")
        shown.append(chat.bots()[0])  # what the tab shows as it comes back
        chat.page.wait_for_timeout(80)
    chat.wait_idle(timeout=120)
    assert "tokens/s" in chat.page.locator("#status").inner_text()  # the reply ended in the page
    final = re.findall(r"\w+", chat.bots()[0])
    for text in shown:  # each was the start of the reply, its words in order (the last few may still be drawn)
        words = re.findall(r"\w+", text)[:-3]
        assert words == final[:len(words)], f"shown out of order: …{' '.join(words[-12:])}"


def storage_text(chat: Chat) -> str:
    """Everything the page keeps in the browser's local and session storage, keys and values."""
    return chat.page.evaluate("""() => [localStorage, sessionStorage].flatMap(
        s => Object.keys(s).map(k => k + '=' + s.getItem(k))).join('\\n')""")


def test_the_browser_keeps_a_chat_only_encrypted_and_a_deleted_one_not_at_all(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=8)
    secret = "Zanzibar-lighthouse-4471"
    chat.send(f"Remember the word {secret}.")
    chat.page.wait_for_timeout(1500)  # the list is written to the browser about once a second
    kept = storage_text(chat)
    assert "phi3ov" in kept  # the chat list is there ...
    assert secret not in kept  # ... encrypted: no copy of the message in clear (nor in Gradio's run history)
    chat.page.locator("#delete-chat").click()
    wait_chats(chat, 0)
    reload(chat)
    assert secret not in chat.page.content()  # deleted: it does not come back


def test_rename_delete_undo_and_switch(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=8)
    chat.send("Alpha question")
    new_chat(chat)
    chat.send("Beta question")
    assert wait_chats(chat, 2) == ["Beta question", "Alpha question"]

    title = chat.page.locator("#chat-title input")
    title.fill("My renamed chat")
    title.press("Enter")
    chat.page.wait_for_function(
        "[...document.querySelectorAll('#chats label')].some(l => l.innerText.includes('My renamed chat'))",
        timeout=5000)
    assert chats(chat) == ["My renamed chat", "Alpha question"]

    chat.page.locator("#delete-chat").click()
    assert wait_chats(chat, 1) == ["Alpha question"]
    wait_text(chat, "Alpha question")  # the next chat opens
    chat.page.locator("#undo-delete").click()
    assert wait_chats(chat, 2)[0] == "My renamed chat"
    wait_text(chat, "Beta question")

    reload(chat)  # the rename and the undone delete were kept
    assert sorted(wait_chats(chat, 2)) == ["Alpha question", "My renamed chat"]


def test_edit_resends_and_regenerate_keeps_the_earlier_reply(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=16)
    chat.send("Name a colour.")
    chat.send("Name a fruit.")
    first = chat.bots()[1]

    chat.page.locator("#regenerate").click()
    chat.page.locator("#variant-label").get_by_text("2 / 2").wait_for(timeout=15000)
    chat.wait_idle()
    second = chat.bots()[1]
    chat.page.locator("#older-reply").click()
    chat.page.locator("#variant-label").get_by_text("1 / 2").wait_for(timeout=5000)
    chat.page.wait_for_function(f"document.querySelectorAll('[data-testid=\"bot\"]')[1].innerText === {first!r}",
                                timeout=5000)
    chat.page.locator("#newer-reply").click()
    chat.page.wait_for_function(f"document.querySelectorAll('[data-testid=\"bot\"]')[1].innerText === {second!r}",
                                timeout=5000)

    # Editing the first message drops the turns after it and answers the edit.
    chat.page.get_by_test_id("user").first.hover()
    chat.page.locator('#chatbot button[aria-label="Edit"]').first.click()
    chat.page.locator("#chatbot textarea").fill("Name an animal.")
    chat.page.locator('#chatbot button[aria-label="Submit"]').click()
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 1", timeout=10000)
    chat.wait_idle()
    assert chat.users() == ["Name an animal."] and len(chat.bots()) == 1
    assert not chat.page.locator("#variant-nav").is_visible()
    reload(chat)
    wait_text(chat, "Name an animal.")
    assert chat.users() == ["Name an animal."]


def test_stop_and_discard_removes_the_reply_and_puts_the_message_back(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=8)
    chat.send("Hi")
    chat.settings(max_new_tokens=1024, seed=1)
    chat.send(LONG_PROMPT, wait=False)
    chat.page.wait_for_function(  # the reply is streaming
        "document.querySelectorAll('[data-testid=\"bot\"]').length === 2", timeout=60000)
    # Dispatched, not clicked: a click waits for the button to hold still, which it may not while the
    # status line above it changes with every update of a reply streaming on a busy machine.
    chat.page.locator("#stop-discard").dispatch_event("click")
    chat.wait_idle()
    assert chat.users() == ["Hi"] and len(chat.bots()) == 1
    assert chat.box.input_value() == LONG_PROMPT
    reload(chat)  # the discarded turn is gone from what the browser keeps too
    wait_text(chat, "Hi")
    assert chat.users() == ["Hi"]
    chat.settings(max_new_tokens=8)
    chat.send("Hello again")  # the engine is free: the next message is answered
    assert len(chat.bots()) == 2


def test_arabic_reads_right_to_left_beside_english(browser, server):
    chat = Chat(browser, server.url, locale="ar")
    try:
        assert chat.page.locator("#send").inner_text() == "إرسال"  # the interface follows the browser's language
        chat.box.fill(ARABIC)
        assert chat.box.evaluate("e => getComputedStyle(e).direction") == "rtl"  # the box follows what is typed
        chat.box.fill("")
        saved = {"messages": [{"role": "user", "content": ARABIC}, {"role": "assistant", "content": ARABIC_REPLY}]}
        chat.load_file(name="arabic.json", data=json.dumps(saved).encode())
        wait_text(chat, "مرحبا")
        chat.settings(max_new_tokens=24, temperature=0)
        chat.page.locator("#settings .label-wrap").first.click()  # fold the settings again
        chat.send(ENGLISH)
        # Where each message's first character sits: at the right edge of its paragraph when the
        # paragraph reads right to left, at the left edge otherwise.
        messages = chat.page.evaluate("""() => [...document.querySelectorAll('#chatbot .message-content')].map(e => {
            const p = e.querySelector('p'), r = document.createRange(), text = p.firstChild;
            r.setStart(text, 0); r.setEnd(text, 1);
            const ch = r.getClientRects()[0], box = p.getBoundingClientRect();
            const items = [...e.querySelectorAll('li')].map(li => getComputedStyle(li).direction);
            const code = e.querySelector('pre code');
            return {dir: getComputedStyle(e).direction, text: e.innerText.slice(0, 20), items,
                    code: code ? getComputedStyle(code).direction : null,
                    atRight: Math.abs(box.right - ch.right) <= 2, atLeft: Math.abs(ch.left - box.left) <= 2}; })""")
        assert len(messages) == 4, messages
        for arabic in messages[:2]:  # the Arabic message and its reply
            assert arabic["dir"] == "rtl" and arabic["atRight"] and not arabic["atLeft"], arabic
        assert messages[1]["items"] == ["rtl", "rtl"] and messages[1]["code"] == "ltr"  # lists follow, code stays LTR
        english, reply = messages[2], messages[3]
        assert english["dir"] == "ltr" and english["atLeft"], english  # beside them, left to right
        first_letter = next(ch for ch in reply["text"] if ch.isalpha())  # the model picks the reply's language
        assert reply["dir"] == ("rtl" if "\u0600" <= first_letter <= "\u06ff" else "ltr"), reply
        chat.page.locator(".toast-body").first.wait_for(state="detached", timeout=15000)
        chat.page.screenshot(path=screenshots_dir() / "arabic.png")
        assert not chat.errors, chat.errors
    finally:
        chat.close()


def test_the_chat_says_when_it_waits_for_a_free_slot(browser, tmp_path_factory):
    srv = start_server(tmp_path_factory, "--max-num-seqs", "1")
    first = second = None
    try:
        first, second = Chat(browser, srv.url), Chat(browser, srv.url)
        first.settings(seed=1)  # a long reply (1024 tokens at most), so the second one has to wait
        second.settings(max_new_tokens=8)  # set up before the first reply starts: it may end in seconds
        first.send(LONG_PROMPT, wait=False)
        wait_streaming(first, 20)
        second.send("Hello", wait=False)
        second.page.wait_for_function(
            "document.querySelector('#status').innerText.includes('Waiting for a free slot')", timeout=10000)
        # Clicked in the page, without waiting: the reply may just have ended (its text depends on the CPU's
        # rounding), and then the Stop button is gone from the page; the second reply is answered either way.
        first.page.evaluate("document.querySelector('#stop')?.click()")
        second.wait_idle()
        assert len(second.bots()) == 1 and re.search(r"tokens/s", second.status())
        assert not first.errors and not second.errors, first.errors + second.errors
    finally:
        for chat in (first, second):
            if chat is not None:
                chat.close()
        srv.stop()


def test_the_model_menu_switches_models_and_keeps_the_conversation(open_chat, bundled_ref, tmp_path_factory):
    from support.folders import hardlinked_copy

    root = tmp_path_factory.mktemp("models")
    hardlinked_copy(bundled_ref.path, root / "smol-copy", "smol-copy")
    srv = start_server(tmp_path_factory, "--models-dir", str(root))
    try:
        chat = open_chat(srv.url)
        chat.settings(max_new_tokens=8)
        chat.send("Hello")
        menu = chat.page.locator("#model input")
        menu.click()
        chat.page.get_by_role("option", name="smol-copy").click()
        chat.page.locator("#header").get_by_text("smol-copy").wait_for(timeout=60000)
        chat.toast("Now serving smol-copy").wait_for(timeout=30000)
        assert chat.users() == ["Hello"] and len(chat.bots()) == 1  # the conversation stays
        chat.send("And again")
        assert len(chat.bots()) == 2
        import urllib.request

        with urllib.request.urlopen(f"{srv.url}/health", timeout=10) as response:
            assert response.status == 200
    finally:
        srv.stop()


# Bounded strings: the object must end well within max new tokens whatever text the CPU's rounding gives.
COLOUR = ('{"type": "object", "properties": {"colour": {"type": "string", "maxLength": 20}, '
          '"reason": {"type": "string", "maxLength": 80}}, "required": ["colour", "reason"], "additionalProperties": false}')


def test_reply_as_json_follows_the_schema_and_a_bad_schema_is_refused(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=300, temperature=0)  # greedy, and room for the whole object
    chat.page.locator("#reply-json input").check()
    schema = chat.page.locator("#json-schema textarea")
    schema.fill(COLOUR)
    chat.send("What is your favourite colour, and why?")
    reply = json.loads(chat.bots()[0])  # the reply parses, and follows the schema
    assert set(reply) == {"colour", "reason"} and all(isinstance(v, str) for v in reply.values())
    assert len(reply["colour"]) <= 20 and len(reply["reason"]) <= 80

    schema.fill('{"type": "object", ')  # not JSON: refused, the message stays in the box
    chat.box.fill("Another one")
    chat.box.press("Enter")
    chat.toast("The JSON schema is not valid JSON").wait_for(timeout=10000)
    assert chat.box.input_value() == "Another one" and len(chat.users()) == 1


def test_a_reply_cut_at_the_length_limit_says_so_and_continue_writes_on(open_chat):
    chat = open_chat()
    cont = chat.page.locator("#continue")
    chat.settings(max_new_tokens=8, temperature=0)
    chat.send("Write a long story about a lighthouse keeper.")
    cut = chat.bots()[0]
    assert "Stopped at the length limit" in cut and "length limit" in chat.status()
    cont.wait_for(timeout=10000)
    cut_text = cut.split("✂")[0].strip()
    cont.click()
    chat.page.wait_for_function(
        "(document.querySelectorAll('[data-testid=\"bot\"]')[0]?.innerText || '').length > "
        f"{len(cut)}", timeout=60000)
    chat.wait_idle()
    longer = chat.bots()
    assert len(longer) == 1 and longer[0].startswith(cut_text) and len(longer[0]) > len(cut)  # the same bubble grew
    saved = chat.save_json()["messages"][-1]
    assert saved["content"].startswith(cut_text) and saved["generation"]["continued"] == 1

    # A JSON reply cut short is shown as cut, never as the answer; Continue writes it with more room until it parses.
    new_chat(chat)
    chat.settings(max_new_tokens=12)
    chat.page.locator("#reply-json input").check()
    chat.page.locator("#json-schema textarea").fill(COLOUR)
    chat.send("What is your favourite colour, and why?")
    assert "this JSON is not complete" in chat.bots()[0]
    for _ in range(10):  # each press gives 12 more tokens of room; the bounded object needs far fewer than 130
        if not cont.is_visible():
            break
        before = chat.bots()[0]
        cont.click()
        chat.page.wait_for_function("b => document.querySelector('[data-testid=\"bot\"]')?.innerText !== b",
                                    arg=before, timeout=60000)
        chat.wait_idle()
    reply = json.loads(chat.bots()[0])
    assert set(reply) == {"colour", "reason"}
    assert not cont.is_visible()
