"""Documents through the API: OpenAI `file` content parts on /v1/chat/completions, sent with the official `openai`
client to a launched server with the real model (its context capped at 1024 tokens)."""

from __future__ import annotations

import base64
import json
import urllib.request

import openai
import pytest
from support.documents import FACT, long_pdf, pdf

from phi3ov.documents import extract

pytestmark = pytest.mark.slow

REPORT = pdf(["Quarterly report. Sales of lamps rose by a third in the spring.", FACT])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from support.browserkit import start_server

    srv = start_server(tmp_path_factory, "--context-length", "1024")
    yield srv
    srv.stop()


def file_part(name: str, data: bytes, mime: str) -> dict:
    return {"type": "file", "file": {"filename": name,
                                     "file_data": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def ask(client, model, *parts: dict, **kwargs):
    return client.chat.completions.create(model=model, max_tokens=8, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is the launch code?"}, *parts]}], **kwargs)


def tokens(server, text: str) -> int:
    request = urllib.request.Request(f"{server.url}/tokenize", data=json.dumps({"prompt": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["count"]


def test_a_pdf_sent_as_a_file_part_is_read(server, client, model):
    plain = client.chat.completions.create(model=model, max_tokens=8, temperature=0, messages=[
        {"role": "user", "content": "What is the launch code?"}])
    reply = ask(client, model, file_part("report.pdf", REPORT, "application/pdf"))
    text = extract("report.pdf", REPORT).text
    counted = tokens(server, text)
    assert reply.choices[0].message.content and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens >= plain.usage.prompt_tokens + counted  # the document's text was read


def test_a_streamed_reply_reads_a_text_file_too(client, model):
    stream = ask(client, model, file_part("notes.txt", FACT.encode(), "text/plain"), stream=True,
                 stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.prompt_tokens > 20


@pytest.mark.parametrize(("part", "said"), [
    (file_part("broken.pdf", b"%PDF-1.4 not a pdf", "application/pdf"), "could not be read as a PDF"),
    (file_part("scan.pdf", pdf([""]), "application/pdf"), "scanned PDF"),
    (file_part("photo.png", b"\x89PNG\r\n", "image/png"), "not a kind of file"),
    ({"type": "file", "file": {"filename": "x.pdf", "file_data": "data:application/pdf;base64,@@"}}, "not base64"),
    ({"type": "file", "file": {"file_id": "file-abc123"}}, "no files API"),
])
def test_a_bad_file_is_a_400_in_openai_shape(client, model, part, said):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, model, part)
    body = err.value.body
    assert err.value.status_code == 400 and said in body["message"]
    assert body["code"] == "invalid_file" and body["type"] == "invalid_request_error"


def test_a_document_too_long_for_the_context_is_retrieved_to_fit(client, model):
    """Its passages most relevant to the question go in instead (the fact is on page 10 of 12)."""
    minutes = long_pdf(pages=12, fact_page=10)
    plain = ask(client, model)
    reply = ask(client, model, file_part("minutes.pdf", minutes, "application/pdf"))
    assert reply.choices[0].message.content and 1024 - 8 >= reply.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_a_question_too_long_for_the_context_is_refused_before_the_pipeline(client, model):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "text", "text": "Why? " * 1500}, file_part("notes.txt", FACT.encode(), "text/plain")]}])
    assert err.value.body["code"] == "context_length_exceeded" and "1024 tokens" in err.value.body["message"]
    assert ask(client, model).choices[0].message.content  # and the server answers the next request
