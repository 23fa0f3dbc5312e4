"""Helpers for the browser tests: a real app, the real model, a real browser (Debian's chromium), loaded
as a pytest plugin by conftest.py.

One server per module (ServerProcess: a child process on a free loopback port, stopped by its
PID); a fresh browser context per test, so each test is a new browser session. Replies are kept
short with the "Max new tokens" slider. Every test fails if the page logs an error.
Screenshots go to $PHI3OV_SCREENSHOTS (default tests/artifacts/); `make screenshots` refreshes
assets/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from playwright import sync_api
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parents[2]
SAVED_CHAT = Path(__file__).parent / "data" / "saved_chat.json"
FIGURES = re.compile(r"first token \d+ ms · [\d.]+ tokens/s")
LONG_PROMPT = "Write a very long story about a dragon, at least 20 paragraphs."
SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank. "

# Records every change of the status line and of the newest reply (on every DOM mutation, and every
# 20 ms), so a test can see what a person saw (the "processing prompt" line, the reply growing)
# however fast it went.
RECORDER = """
window.__log = [];
const record = () => {
  const status = document.querySelector('#status');
  const bots = document.querySelectorAll('[data-testid="bot"]');
  const entry = {t: performance.now(), status: status ? status.innerText : '',
                 bot: bots.length ? bots[bots.length - 1].innerText : '', bots: bots.length};
  const last = window.__log[window.__log.length - 1];
  if (!last || last.status !== entry.status || last.bot !== entry.bot) window.__log.push(entry);
};
setInterval(record, 20);
document.addEventListener('DOMContentLoaded', () => new MutationObserver(record).observe(
  document.body, {subtree: true, childList: true, characterData: true}));
"""
IDLE = """() => { const send = document.querySelector('#send');
  return !!send && send.offsetParent !== null && !document.querySelector('#stop')?.offsetParent
         && !document.querySelector('#status .phi3ov-busy'); }"""


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("PHI3OV_SCREENSHOTS") or ROOT / "tests" / "artifacts")
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_server(tmp_path_factory, *args: str):
    from phi3ov.process import ServerProcess

    log = tmp_path_factory.mktemp("server") / "server.log"
    return ServerProcess(list(args), log_path=log, env={"PHI3OV_SYSTEM_PROMPT": "You are a helpful AI assistant."}).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server whose context is capped at 256 tokens, so a short chat overflows it."""
    srv = start_server(tmp_path_factory, "--context-length", "256")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):  # in CI a missing browser fails the run
        pytest.skip("Debian's chromium is not installed: run `make browser`.")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Chat:
    """One browser session on the chat page, with the moves a person makes."""

    def __init__(self, browser, url: str, viewport=(1280, 860), locale: str = "en-US"):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                           accept_downloads=True, locale=locale)
        self.context.add_init_script(RECORDER)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.loads = 0  # documents loaded in this tab: an error says which one logged it (a reload makes two)
        self.page.on("framenavigated", self._navigated)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self._log("page error", "", f"{err}\n{err.stack}"))
        self.page.goto(url)
        self.box = self.page.locator("#message textarea")
        self.box.wait_for()

    def _navigated(self, frame) -> None:
        if frame == self.page.main_frame:
            self.loads += 1

    def _console(self, msg) -> None:
        if msg.type == "error":
            at = msg.location or {}
            self._log("console error", f", {at.get('url')}:{at.get('lineNumber')}", msg.text)

    def _log(self, kind: str, where: str, text: str) -> None:
        self.errors.append(f"{kind} (load {self.loads}{where}): {text}")

    def forget_errors_of_load(self, load: int, since: int = 0) -> None:
        """Forget what document `load` of this tab logged after the first `since` errors (a page being left)."""
        mark = f"(load {load}"
        self.errors[since:] = [e for e in self.errors[since:] if not re.match(rf"[a-z ]+ {re.escape(mark)}[,)]", e)]

    # what is on screen
    def users(self) -> list[str]:
        return self.page.get_by_test_id("user").all_inner_texts()

    def bots(self) -> list[str]:
        return self.page.get_by_test_id("bot").all_inner_texts()

    def status(self) -> str:
        return self.page.locator("#status").inner_text()

    def toast(self, text: str):
        return self.page.get_by_text(text).first

    def log(self) -> list[dict]:
        return self.page.evaluate("window.__log")

    # actions
    def send(self, text: str, *, wait: bool = True, timeout: float = 90) -> None:
        before = len(self.users())
        self.box.fill(text)
        self.box.press("Enter")
        self.page.wait_for_function(f"document.querySelectorAll('[data-testid=\"user\"]').length > {before}",
                                    timeout=15000)  # the check goes through the queue: slower on a busy machine
        if wait:
            self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 90) -> None:
        self.page.wait_for_function(IDLE, timeout=timeout * 1000)

    def settings(self, *, max_new_tokens=None, temperature=None, seed=None, system_prompt=None) -> None:
        panel = self.page.locator("#settings")
        if not self.page.locator("#seed textarea, #seed input").first.is_visible():
            panel.locator(".label-wrap").first.click()
        for elem, value in (("#max-new-tokens", max_new_tokens), ("#temperature", temperature)):
            if value is not None:
                field = self.page.locator(f"{elem} input[type=number]")
                # The panel mounts its sliders when first opened and may reset a value typed in the
                # same instant, so type again until the slider itself has taken the value.
                for attempt in range(3):
                    field.fill(str(value))
                    field.press("Enter")
                    try:
                        self.page.wait_for_function(
                            f"document.querySelector('{elem} input[type=range]').value === '{value}'",
                            timeout=3000)
                        break
                    except PlaywrightTimeout:
                        if attempt == 2:
                            raise
        if seed is not None:
            self.page.locator("#seed textarea, #seed input").first.fill(str(seed))
            self.page.locator("#seed textarea, #seed input").first.press("Tab")
        if system_prompt is not None:
            self.page.locator("#system-prompt textarea").fill(system_prompt)
            self.page.locator("#system-prompt textarea").press("Tab")

    def load_file(self, path=None, *, name="chat.json", data: bytes | None = None) -> None:
        with self.page.expect_file_chooser() as chooser:
            self.page.locator("#load").click()
        if path is not None:
            chooser.value.set_files(path)
        else:
            chooser.value.set_files(files=[{"name": name, "mimeType": "application/json", "buffer": data}])

    def save_json(self) -> dict:
        self.page.locator("#save").click()
        button = self.page.locator("#download-json")
        button.wait_for()
        with self.page.expect_download() as download:
            button.click()
        return json.loads(Path(download.value.path()).read_text())

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_chat(browser, server):
    """Open chat pages (fresh sessions); at the end, none of them may have logged an error."""
    pages: list[Chat] = []

    def opener(url: str | None = None, **kwargs) -> Chat:
        chat = Chat(browser, url or server.url, **kwargs)
        pages.append(chat)
        return chat

    yield opener
    errors = [e for chat in pages for e in chat.errors]
    for chat in pages:
        chat.close()
    assert not errors, "the browser logged errors:\n" + "\n".join(errors)


