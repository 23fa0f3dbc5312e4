"""`phi3ov eval`: lm-evaluation-harness's `local-completions` model against phi3ov, per model folder.

For each folder a server is started (by PID, stopped in `finally`), lm-eval runs the bundled tasks through
/v1/completions with the remote tokenizer, and the figures it writes are read back and printed side by side.
The command lm-eval is given is printed too: the same line runs any other lm-eval task against phi3ov.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..process import ServerProcess
from .tasks import CLOZE, PERPLEXITY, TASKS, write_tasks

LM_EVAL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Scores:
    folder: str
    accuracy: float
    accuracy_stderr: float
    word_perplexity: float
    bits_per_byte: float
    items: int


def lm_eval_command(lm_eval: str, url: str, model: str, tasks_dir: Path, out: Path, tokenized: bool,
                    key: str | None = None, limit: int | None = None) -> list[str]:
    args = [f"model={model}", f"base_url={url}/v1/completions", "tokenizer_backend=remote",
            f"tokenized_requests={tokenized}", "max_retries=1", "timeout=300"]
    if key:
        args.append(f"auth_token={key}")
    command = [lm_eval, "run", "--model", "local-completions", "--model_args", ",".join(args),
               "--tasks", ",".join(TASKS), "--include_path", str(tasks_dir), "--output_path", str(out)]
    return command + (["--limit", str(limit)] if limit else [])


def find_lm_eval(given: str | None) -> str:
    for candidate in (given, ".venv-eval/bin/lm_eval", shutil.which("lm_eval")):
        if candidate and Path(candidate).exists():
            return str(Path(candidate).resolve())
    raise BadInput("lm-evaluation-harness (`lm_eval`) was not found.",
                   "Run `make eval` (it installs lm-eval in .venv-eval), or pass --lm-eval PATH.")


def read_scores(folder: str, out: Path) -> Scores:
    """The figures lm-eval wrote (results_*.json under `out`)."""
    found = sorted(out.rglob("results_*.json"))
    if not found:
        raise BadInput(f"lm-eval wrote no results under {out}.", "See its output above.")
    results = json.loads(found[-1].read_text())["results"]
    cloze, ppl = results[CLOZE], results[PERPLEXITY]
    items = json.loads(found[-1].read_text()).get("n-samples", {}).get(CLOZE, {}).get("effective", 0)
    return Scores(folder, cloze["acc,none"], cloze.get("acc_stderr,none", 0.0), ppl["word_perplexity,none"],
                  ppl["bits_per_byte,none"], items)


def evaluate(folder: str, lm_eval: str, tokenized: bool = True, limit: int | None = None,
             server_args: tuple[str, ...] = ()) -> Scores:
    """lm-eval's bundled tasks against a server on this model folder."""
    with tempfile.TemporaryDirectory(prefix="phi3ov-eval-") as tmp:
        work = Path(tmp)
        tasks_dir = write_tasks(work / "tasks")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HOME": str(work / "hf")}  # lm-eval's datasets cache stays in the temporary folder
        with ServerProcess(["--model", folder, "--deterministic", *server_args], log_path=work / "server.log") as srv:
            model = json.loads(_get(f"{srv.url}/v1/models"))["data"][0]["id"]
            command = lm_eval_command(lm_eval, srv.url, model, tasks_dir, work / "out", tokenized, limit=limit)
            print("$", " ".join(command), flush=True)
            done = subprocess.run(command, env=env, timeout=LM_EVAL_TIMEOUT_S, check=False)
            if done.returncode != 0:
                raise BadInput(f"lm-eval exited with code {done.returncode}.", "See its output above.")
        return read_scores(folder, work / "out")


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()


def table(scores: list[Scores]) -> str:
    lines = ["| model folder | cloze accuracy (chance 25 %) | word perplexity | bits per byte |",
             "|---|---|---|---|"]
    for s in scores:
        lines.append(f"| {s.folder} | {s.accuracy:.1%} ± {s.accuracy_stderr:.1%} ({s.items} items) | "
                     f"{s.word_perplexity:.2f} | {s.bits_per_byte:.3f} |")
    return "\n".join(lines)


def add_args(parser) -> None:
    parser.add_argument("folders", nargs="*", help="Model folders to evaluate (default: the bundled model).")
    parser.add_argument("--lm-eval", help="The lm_eval program (default: .venv-eval/bin/lm_eval, then PATH).")
    parser.add_argument("--string-prompts", action="store_true",
                        help="Send prompts as text (lm-eval's tokenized_requests=False), not token ids.")
    parser.add_argument("--limit", type=int, help="Items per task (lm-eval's --limit; default: all).")


def main(args) -> int:
    from .. import models

    lm_eval = find_lm_eval(args.lm_eval)
    folders = args.folders or [str(models.bundled().path)]
    scores = [evaluate(folder, lm_eval, tokenized=not args.string_prompts, limit=args.limit) for folder in folders]
    print(table(scores))
    return 0
