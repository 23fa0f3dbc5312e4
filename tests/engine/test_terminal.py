"""`phi3ov chat`: the same engine in a terminal, with the real bundled model."""

import subprocess
import sys


def run_chat(stdin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phi3ov.cli", "chat", "--temperature", "0", "--max-new-tokens", "16",
                           *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_terminal_chat_streams_replies_and_keeps_the_conversation():
    done = run_chat("My name is Ada.\nWhat is my name?\n/quit\n")
    assert done.returncode == 0, done.stderr
    replies = [line for line in done.stdout.split("> ") if line.strip()]
    assert len(replies) == 2 and all(r.strip() for r in replies)
    assert done.stderr.count("generated tokens") == 2  # the figures of each reply
    # the second turn was sent with the first one: its prompt is longer than the first reply's
    prompts = [int(part.split(" prompt")[0].split("· ")[-1]) for part in done.stderr.split("[")[1:]]
    assert prompts[1] > prompts[0]


def test_terminal_chat_reports_bad_options_clearly():
    done = run_chat("", "--max-new-tokens", "0")
    assert done.returncode == 2
    assert "max_new_tokens" in done.stderr and "between 1 and" in done.stderr
