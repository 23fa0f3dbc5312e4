"""Chat with your documents, as a person does it: the real app and model in Chromium (fixtures in browserkit.py).

The server's context is capped at 1024 tokens, so a two-page PDF fits whole and a twelve-page one does not (its
fact on page 10 has to be found by retrieval). Assertions are on structure (chips, Sources, toasts, token counts),
never on the model's wording.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request

import pytest
from support.browserkit import Chat, screenshots_dir, start_server
from support.documents import FACT, encrypted_pdf, long_pdf, pdf

from phi3ov.documents import extract

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NOTES = b"Ada Lovelace was born in 1815 in London. She wrote the first published computer program."
REPORT = pdf(["Quarterly report. Sales of lamps rose by a third in the spring.",
              "Page two: the new warehouse in Leeds opens in March."])
DROP = """([name, b64, type]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const files = new DataTransfer();
  files.items.add(new File([bytes], name, {type}));
  const box = document.querySelector('#message textarea');
  for (const kind of ['dragenter', 'dragover', 'drop'])
    box.dispatchEvent(new DragEvent(kind, {dataTransfer: files, bubbles: true, cancelable: true}));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's one server (open_chat opens its pages): a small context, and files capped at 1 MB."""
    srv = start_server(tmp_path_factory, "--context-length", "1024", "--max-upload-mb", "1")
    yield srv
    srv.stop()


def tokens(server, text: str) -> int:
    request = urllib.request.Request(f"{server.url}/tokenize", data=json.dumps({"prompt": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["count"]


def in_box(chat: Chat) -> int:
    return chat.page.locator("#message .thumbnail-wrapper").count()


def wait_in_box(chat: Chat, count: int) -> None:
    chat.page.wait_for_function(f"document.querySelectorAll('#message .thumbnail-wrapper').length === {count}",
                                timeout=15000)


def attach(chat: Chat, *files: tuple[str, bytes, str]) -> None:
    """With the paperclip beside the box."""
    before = in_box(chat)
    with chat.page.expect_file_chooser(timeout=10000) as chooser:
        chat.page.locator("#message").get_by_test_id("upload-button").first.click()
    chooser.value.set_files(files=[{"name": n, "mimeType": m, "buffer": d} for n, d, m in files])
    wait_in_box(chat, before + len(files))


def drop(chat: Chat, name: str, data: bytes, mime: str) -> None:
    """Dragged onto the box and dropped."""
    before = in_box(chat)
    chat.page.evaluate(DROP, [name, base64.b64encode(data).decode(), mime])
    wait_in_box(chat, before + 1)


def chips(chat: Chat) -> list[str]:
    return chat.page.locator("#chatbot .phi3ov-chip").all_inner_texts()


def sources(chat: Chat, reply: int = -1) -> list[str]:
    return chat.page.get_by_test_id("bot").nth(reply).locator(".phi3ov-source").all_inner_texts()


def prompt_tokens(chat: Chat) -> int:
    return int(re.search(r"(\d+) prompt", chat.status()).group(1))


def test_a_text_and_a_pdf_that_fit_go_in_whole_and_stay_after_a_reload(open_chat, server):
    chat = open_chat()
    chat.settings(max_new_tokens=16)
    attach(chat, ("notes.txt", NOTES, "text/plain"), ("report.pdf", REPORT, "application/pdf"))
    chat.send("When was Ada Lovelace born?")
    assert in_box(chat) == 0  # sent with the message
    notes, report = tokens(server, NOTES.decode()), tokens(server, extract("report.pdf", REPORT).text)
    assert chips(chat) == [f"notes.txt · {notes} tokens · whole", f"report.pdf · 2 pages · {report:,} tokens · whole"]
    assert chat.users()[0].endswith("When was Ada Lovelace born?")
    assert sources(chat) == ["notes.txt: the whole document", "report.pdf: the whole document, 2 pages"]
    assert prompt_tokens(chat) > notes + report  # both went into the prompt

    chat.send("And where?")  # a follow-up: the documents stay in the conversation's prompt
    assert len(chat.bots()) == 2 and prompt_tokens(chat) > notes + report
    assert len(chips(chat)) == 2  # shown once, on the message they came with

    chat.page.reload()
    chat.box.wait_for()
    chat.page.locator("#chatbot .phi3ov-chip").first.wait_for(timeout=15000)
    assert len(chips(chat)) == 2 and sources(chat, 0) == ["notes.txt: the whole document",
                                                          "report.pdf: the whole document, 2 pages"]
    chat.send("Which city is the warehouse in?")
    assert len(chat.bots()) == 3 and prompt_tokens(chat) > notes + report  # still read after the reload


def test_a_long_pdf_dropped_on_the_box_is_retrieved_and_sources_name_the_late_page_screenshots(open_chat, server):
    chat = open_chat()
    chat.settings(max_new_tokens=40)
    minutes = long_pdf(pages=12, fact_page=10)
    drop(chat, "minutes.pdf", minutes, "application/pdf")
    chat.send("What is the secret launch code of the Zanzibar lighthouse?")
    whole = tokens(server, extract("minutes.pdf", minutes).text)
    assert whole > 1024 and chips(chat) == [f"minutes.pdf · 12 pages · {whole:,} tokens · passages"]
    found = sources(chat)
    assert found and all(s.startswith("minutes.pdf, page ") for s in found)
    assert any(s.startswith("minutes.pdf, page 10, passage ") and "7719" in s for s in found), found
    assert prompt_tokens(chat) <= 1024 - 40  # retrieved to fit, never refused
    chat.page.locator(".toast-body").first.wait_for(state="detached", timeout=15000)
    chat.page.get_by_test_id("bot").last.scroll_into_view_if_needed()
    chat.page.screenshot(path=screenshots_dir() / "documents.png")

    chat.send("Who met to discuss the budget for the harbour works?")  # a follow-up: passages of its own
    later = sources(chat)
    assert later and all(s.startswith("minutes.pdf, page ") for s in later), chat.bots()[-1]
    assert not set(later) & set(found) and sources(chat, 0) == found  # new ones; the first reply's stay as they were
    assert len(chips(chat)) == 1 and prompt_tokens(chat) <= 1024 - 40


def test_bad_files_are_refused_and_nothing_is_lost(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=8)
    chat.send("Hello!")
    before = (chat.users(), chat.bots())
    refused = [("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf", "could not be read as a PDF"),
               ("scan.pdf", pdf(["", ""]), "application/pdf", "looks like a scanned PDF"),
               ("locked.pdf", encrypted_pdf(), "application/pdf", "is encrypted"),
               ("big.txt", b"word " * 320_000, "text/plain", "this server takes files of at most 1 MB")]
    for name, data, mime, said in refused:
        attach(chat, (name, data, mime))
        chat.box.fill("What does it say?")
        chat.box.press("Enter")
        chat.toast(said).wait_for(timeout=15000)
        assert (chat.users(), chat.bots()) == before, name  # the chat is as it was
        assert chat.box.input_value() == "What does it say?" and in_box(chat) == 1, name  # and so is the box
        chat.page.locator("#message .thumbnail-wrapper .delete-button").first.click()
        wait_in_box(chat, 0)
    attach(chat, ("fact.txt", FACT.encode(), "text/plain"))
    chat.send("What is the code?")
    assert len(chat.bots()) == 2 and chips(chat)[0].startswith("fact.txt")


def test_the_box_with_its_paperclip_still_types_sends_and_takes_text_back(open_chat):
    chat = open_chat()
    chat.settings(max_new_tokens=8)
    chat.box.fill("line one")
    chat.box.press("Shift+Enter")
    chat.box.press_sequentially("line two")
    assert chat.box.input_value() == "line one\nline two" and chat.users() == []  # Shift+Enter: a new line
    chat.box.press("Enter")
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 1", timeout=15000)
    chat.wait_idle()
    assert chat.box.input_value() == "" and len(chat.bots()) == 1
    chat.page.locator("#undo").click()
    chat.page.wait_for_function("document.querySelectorAll('[data-testid=\"user\"]').length === 0", timeout=10000)
    assert chat.box.input_value() == "line one\nline two"  # Undo puts the text back in the box


def test_with_an_embedding_model_the_fused_ranking_finds_the_late_page(open_chat, tmp_path_factory):
    from support.tiny_embedding import build

    folder = build(tmp_path_factory.mktemp("embedding"))
    srv = start_server(tmp_path_factory, "--context-length", "1024", "--embedding-model", str(folder))
    try:
        chat = open_chat(srv.url)
        chat.settings(max_new_tokens=16)
        drop(chat, "minutes.pdf", long_pdf(pages=12, fact_page=10), "application/pdf")
        chat.send("What is the secret launch code?")
        found = sources(chat)
        assert any(s.startswith("minutes.pdf, page 10, passage ") and "7719" in s for s in found), found
        assert len(found) > 1  # the embedding ranks every passage: the room fills with the best of them
    finally:
        srv.stop()
