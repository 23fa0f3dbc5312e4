"""Two lm-eval tasks made from the bundled text (phi3ov/data/alice.txt), so they run with no download.

- `phi3ov_alice_cloze` (multiple choice, loglikelihood): a sentence so far, and four ways to go on with
  the next words: the text's own, and three spans of the same length from elsewhere in the text. Chance is
  25 %; a language model that reads English should do far better.
- `phi3ov_alice_perplexity` (loglikelihood_rolling): each paragraph's word and byte perplexity, the figure
  `phi3ov compare` also reports in tokens.
"""

from __future__ import annotations

import json
import random
import re
from importlib import resources
from pathlib import Path

CLOZE = "phi3ov_alice_cloze"
PERPLEXITY = "phi3ov_alice_perplexity"
TASKS = (CLOZE, PERPLEXITY)
SPAN = 3  # words in each choice
STEP = 6  # words between two items' cuts in one sentence
SEED = 20261202  # the distractors are the same on every machine


def bundled_text() -> str:
    return resources.files("phi3ov").joinpath("data/alice.txt").read_text(encoding="utf-8")


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def cloze_items(text: str) -> list[dict]:
    """Every STEP words of each sentence: the sentence so far as the context, its next SPAN words as the
    answer among three spans drawn from elsewhere in the text."""
    words = text.split()
    rng = random.Random(SEED)
    items = []
    for sentence in re.split(r"(?<=[.;:!?])\s+", " ".join(words)):
        said = sentence.split()
        for cut in range(4, len(said) - SPAN + 1, STEP):
            answer = " ".join(said[cut:cut + SPAN])
            choices = {answer}
            while len(choices) < 4:
                at = rng.randrange(0, len(words) - SPAN)
                choices.add(" ".join(words[at:at + SPAN]))
            ordered = sorted(choices, key=lambda _: rng.random())
            items.append({"context": " ".join(said[:cut]), "choices": ordered, "answer": ordered.index(answer)})
    return items


CLOZE_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

PERPLEXITY_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
should_decontaminate: false
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""


def write_tasks(folder: Path) -> Path:
    """The two tasks' data and YAML in `folder` (lm-eval's --include_path); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    text = bundled_text()
    data = {CLOZE: cloze_items(text), PERPLEXITY: [{"text": p} for p in paragraphs(text)]}
    for task, rows in data.items():
        (folder / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / f"{CLOZE}.yaml").write_text(CLOZE_YAML.format(task=CLOZE, data=folder / f"{CLOZE}.jsonl"))
    (folder / f"{PERPLEXITY}.yaml").write_text(PERPLEXITY_YAML.format(task=PERPLEXITY,
                                                                      data=folder / f"{PERPLEXITY}.jsonl"))
    return folder
