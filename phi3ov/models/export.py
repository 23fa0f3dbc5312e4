"""`phi3ov export SOURCE OUT`: an OpenVINO model folder that serves the first time.

The seed of this project is one command:

    optimum-cli export openvino --model M --task text-generation-with-past --weight-format int4
        --group-size 128 --ratio 0.6 --sym --trust-remote-code OUT

`export` runs exactly that (optimum-intel does all conversion and compression) with these
defaults, each one changeable, and adds what the bare command leaves to chance:

- SOURCE may be a Hub id, a local Hugging Face checkpoint or a `.gguf` file. A gguf is loaded
  through transformers, with its tokenizer repaired from the gguf metadata (see gguf.py),
  and the exported tokenizer is checked token by token against OpenVINO GenAI's reading of the gguf.
- A layer width the group size does not divide no longer stops the export: the layers that do
  not fit get the largest group size that does (nncf's `adjust`), and the summary says so.
- The result always has tokenizer and detokenizer IR and stops at the chat template's
  end-of-turn token (Phi-3's `<|end|>`): doctor.py checks and repairs both before the folder
  is put in place.
- Everything is written into a temporary folder beside OUT and renamed into place at the end,
  so an interrupted export leaves nothing half-written; a complete export is reused unless
  `--force`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import ExportFailed, ModelNotFound
from . import doctor
from .resolve import HUB_ID, is_complete, read_json

MARKER = "phi3ov_export.json"  # what was exported from where, with which options
WEIGHT_FORMATS = ("int4", "int8", "fp16", "fp32", "nf4", "mxfp4")
FALLBACKS = ("adjust", "ignore", "error")
GROUP_SIZE_ERROR = "InvalidGroupSizeError"
EXPORT_EXTRA_HINT = "Install the export extra: `make setup-test`, or `pip install -e '.[export]'` after a CPU torch."


@dataclass(frozen=True)
class ExportOptions:
    """optimum-intel export settings. The defaults are the seed's command, flag for flag."""

    task: str = "text-generation-with-past"
    weight_format: str = "int4"
    group_size: int = 128
    ratio: float = 0.6
    sym: bool = True
    trust_remote_code: bool = True
    group_size_fallback: str | None = None  # None: "adjust" when a layer width needs it
    backup_precision: str | None = None
    all_layers: bool = False
    awq: bool = False
    scale_estimation: bool = False
    gptq: bool = False
    dataset: str | None = None
    num_samples: int | None = None

    @property
    def compressed_4bit(self) -> bool:
        return self.weight_format in ("int4", "nf4", "mxfp4")

    def describe(self) -> str:
        if not self.compressed_4bit:
            return self.weight_format
        parts = [self.weight_format, f"group size {self.group_size}", f"ratio {self.ratio:g}", "sym" if self.sym else "asym"]
        parts += [name for name in ("awq", "scale_estimation", "gptq") if getattr(self, name)]
        if self.dataset:
            parts.append(f"dataset {self.dataset}")
        return ", ".join(parts)

    def cli_flags(self, fallback: str | None = None) -> list[str]:
        """The optimum-cli flags for these options (fallback: the group-size fallback to use)."""
        flags = ["--task", self.task, "--weight-format", self.weight_format]
        if self.weight_format not in ("fp16", "fp32"):
            if self.compressed_4bit:
                flags += ["--group-size", str(self.group_size), "--ratio", f"{self.ratio:g}"]
                if fallback:
                    flags += ["--group-size-fallback", fallback]
                if self.all_layers:
                    flags.append("--all-layers")
                if self.backup_precision:
                    flags += ["--backup-precision", self.backup_precision]
                for name in ("awq", "scale_estimation", "gptq"):
                    if getattr(self, name):
                        flags.append("--" + name.replace("_", "-"))
            if self.sym:
                flags.append("--sym")
            if self.dataset:
                flags += ["--dataset", self.dataset]
            if self.num_samples:
                flags += ["--num-samples", str(self.num_samples)]
        if self.trust_remote_code:
            flags.append("--trust-remote-code")
        return flags


@dataclass
class ExportResult:
    folder: Path
    source: str
    options: ExportOptions
    reused: bool
    seconds: float
    report: doctor.Report
    notes: list[str] = field(default_factory=list)

    def files(self) -> list[tuple[str, int]]:
        return sorted(((p.name, p.stat().st_size) for p in self.folder.iterdir() if p.is_file()), key=lambda f: -f[1])

    def summary(self) -> str:
        files = self.files()
        total = sum(size for _, size in files)
        head = (f"Reused the existing export in {self.folder} (pass --force to export again)." if self.reused
                else f"Exported {self.source} to {self.folder} in {self.seconds:.0f} s ({self.options.describe()}).")
        lines = [head]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"Files ({len(files)}, {doctor.human_size(total)}):")
        lines += [f"  {doctor.human_size(size):>9}  {name}" for name, size in files]
        lines.append(f"Weights: {doctor.precision_summary(self.report.weights)}.")
        if self.report.ok:
            lines.append(f"Checked: ready to serve (details: phi3ov doctor {self.folder}).")
        else:
            lines.append("Checked: NOT ready to serve:")
            lines += [f"  ✗ {c.name}: {c.detail}" for c in self.report.problems]
        lines.append(f"Serve it: python app.py --model {self.folder}   (or: make run ARGS=\"--model {self.folder}\")")
        return "\n".join(lines)


def export(source: str | os.PathLike, out: str | os.PathLike, options: ExportOptions | None = None, *,
           force: bool = False, log: TextIO | None = sys.stderr) -> ExportResult:
    """Export SOURCE (Hub id, HF checkpoint folder or .gguf) into the OpenVINO folder OUT."""
    options = options or ExportOptions()
    out = Path(out).expanduser().absolute()
    source_text = str(source)
    started = time.perf_counter()
    say = _printer(log)

    if is_complete(out) and not force:
        previous = _read_marker(out)
        wanted = {"source": _source_key(source_text), "options": dataclasses.asdict(options)}
        if previous and {k: previous.get(k) for k in wanted} != wanted:
            raise ExportFailed(
                f"{out} already holds an export of {previous.get('source')} with other settings.",
                "Pass --force to replace it, or choose another OUT folder.",
            )
        return ExportResult(out, source_text, options, True, 0.0, doctor.diagnose(out),
                            list(previous.get("notes", [])) if previous else [])
    if out.exists() and not force and not (out.is_dir() and not any(out.iterdir())):
        raise ExportFailed(f"{out} exists and is not a complete export.", "Pass --force to replace it, or choose another OUT folder.")
    _require_export_extra()

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staged = work / "openvino"
    notes: list[str] = []
    try:
        model_source, gguf = _prepare_source(source_text, work, say)
        fallback = options.group_size_fallback
        if fallback is None and options.compressed_4bit:
            reason = _group_size_misfit(model_source, options)
            if reason:
                fallback = "adjust"
                notes.append(f"{reason}: those layers use the largest group size that divides them "
                             "(--group-size-fallback adjust).")
        say(f"[2/4] Converting and compressing with optimum-intel: "
            f"optimum-cli export openvino --model {model_source} {' '.join(options.cli_flags(fallback))} OUT")
        ok, output = _run_optimum(model_source, staged, options.cli_flags(fallback), work, log)
        if not ok and GROUP_SIZE_ERROR in output and options.group_size_fallback is None and fallback is None:
            notes.append(f"group size {options.group_size} does not divide some layer widths: those layers use the "
                         "largest group size that divides them (--group-size-fallback adjust).")
            say("Retrying with --group-size-fallback adjust")
            shutil.rmtree(staged, ignore_errors=True)
            ok, output = _run_optimum(model_source, staged, options.cli_flags("adjust"), work, log)
        if not ok:
            raise ExportFailed(f"optimum-cli could not export {source_text}:\n{_tail(output)}",
                               "Check the message above; `--weight-format fp16` rules out compression problems.")
        notes += _nncf_modes(output)

        say("[3/4] Tokenizer IR, chat template and stop tokens")
        notes += _complete_folder(staged, model_source)
        if gguf is not None:
            verify_tokens_against_gguf(staged, gguf)
            notes.append("token ids checked against OpenVINO GenAI's own reading of the gguf: identical.")

        say("[4/4] Checking the result")
        report = doctor.diagnose(staged)
        blocking = [c for c in report.problems if c.name != "chat template"]
        if blocking:
            raise ExportFailed("The exported folder cannot be served: " + "; ".join(f"{c.name}: {c.detail}" for c in blocking),
                               "Please report this with the output above.")
        seconds = time.perf_counter() - started
        _write_marker(staged, source_text, options, notes, seconds)
        _move_into_place(staged, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(out, source_text, options, False, seconds, doctor.diagnose(out), notes)


def _printer(log: TextIO | None):
    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    return say


def _require_export_extra() -> None:
    missing = [m for m in ("optimum.intel", "nncf", "transformers", "torch") if importlib.util.find_spec(m.split(".")[0]) is None
               or (m == "optimum.intel" and importlib.util.find_spec(m) is None)]
    if missing:
        raise ExportFailed(f"Exporting needs {', '.join(missing)}, which is not installed.", EXPORT_EXTRA_HINT)


def _source_key(source: str) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _prepare_source(source: str, work: Path, say) -> tuple[str, Path | None]:
    """What optimum-cli should read: a folder or Hub id; for a gguf, a checkpoint made from it."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFound(f"{source} is a file but not a .gguf.", "Give a Hub id, a checkpoint folder or a .gguf file.")
        from .gguf import gguf_to_checkpoint

        say(f"[1/4] Loading {path.name} with transformers (dequantizes the gguf weights)")
        checkpoint = work / "checkpoint"
        gguf_to_checkpoint(path.resolve(), checkpoint)
        return str(checkpoint), path.resolve()
    if path.is_dir():
        if (path / "openvino_model.xml").exists():
            raise ExportFailed(f"{source} is already an OpenVINO model folder.",
                               f"Serve it (`python app.py --model {source}`), or check it: `phi3ov doctor {source}`.")
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{source} has no config.json, so it is not a Hugging Face checkpoint.",
                                "Give a checkpoint folder (config.json + weights), a .gguf file or a Hub id.")
        say(f"[1/4] Source: the checkpoint in {path}")
        return str(path.resolve()), None
    if HUB_ID.match(source):
        say(f"[1/4] Source: {source} on the Hugging Face Hub (optimum-intel downloads it; resumable)")
        return source, None
    raise ModelNotFound(f"No model at {source}.", "Give a Hub id (e.g. microsoft/Phi-3-mini-4k-instruct), a checkpoint folder or a .gguf file.")


def _group_size_misfit(model_source: str, options: ExportOptions) -> str | None:
    """Why the group size does not fit the model's layer widths, or None when it fits."""
    if options.group_size <= 0:
        return None
    config = _read_config(model_source)
    widths = {key: config.get(key) for key in ("hidden_size", "intermediate_size")}
    bad = {k: v for k, v in widths.items() if isinstance(v, int) and v % options.group_size}
    if not bad:
        return None
    listed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in bad.items())
    return f"group size {options.group_size} does not divide {listed}"


def _read_config(model_source: str) -> dict:
    path = Path(model_source) / "config.json"
    if path.exists():
        return read_json(path)
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model_source, trust_remote_code=True).to_dict()
    except Exception:  # noqa: BLE001 - the retry on InvalidGroupSizeError still covers this case
        return {}


def _run_optimum(model_source: str, dest: Path, flags: list[str], work: Path, log: TextIO | None) -> tuple[bool, str]:
    """Run optimum-cli, streaming its output (progress bars included); returns (success, output)."""
    cmd = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "openvino", "--model", model_source, *flags, str(dest)]
    env = {**os.environ, "TMPDIR": str(work), "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    chunks: list[bytes] = []
    try:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            chunks.append(chunk)
            if log is not None:
                log.write(chunk.decode(errors="replace"))
                log.flush()
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: stop the child before the temporary folder goes
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = b"".join(chunks).decode(errors="replace")
    return code == 0 and (dest / "openvino_model.xml").exists(), text


NNCF_ROW = re.compile(r"│\s*(int4_a?sym|int8_a?sym|nf4|mxfp4|float)[^│]*?(?:group size (\d+))?\s*│\s*(\d+)% \((\d+) / (\d+)\)")


def _nncf_modes(output: str) -> list[str]:
    """nncf's bitwidth table, as one line: which precision and group size how many layers got."""
    rows = [m.groups() for m in NNCF_ROW.finditer(output)]
    if not rows:
        return []
    parts = [f"{mode}{f' group {group}' if group else ''}: {layers}/{total} layers ({share}% of parameters)"
             for mode, group, share, layers, total in rows if layers != "0"]
    return ["nncf compressed " + "; ".join(parts) + "."]


def _tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _complete_folder(folder: Path, model_source: str) -> list[str]:
    """Tokenizer IR when optimum wrote none, and the template's end-of-turn token as a stop token."""
    notes = []
    if not all((folder / f"{n}.xml").exists() for n in (doctor.TOKENIZER, doctor.DETOKENIZER)):
        done = doctor.convert_tokenizer(folder, source=folder if doctor._has_hf_tokenizer(folder) else model_source)
        notes.append(f"optimum-cli wrote no tokenizer IR; {done}.")
    added = doctor.fix_stop_tokens(folder)
    if added:
        notes.append(f"generation_config.json now also stops at token id(s) {added} (the chat template's end of turn).")
    return notes


SAMPLES = (
    "Hello world! How are you today?",
    "  Two  spaces, a\ttab and a new\nline: 1234567 + 89 = 1234656.",
    "Ünïcödé, emoji 🙂 and 中文.",
    "def f(x):\n    return x ** 2  # square",
)


def verify_tokens_against_gguf(folder: Path, gguf: Path) -> None:
    """The exported tokenizer must give the same ids as OpenVINO GenAI's reading of the gguf."""
    import openvino_genai as ov_genai

    ours, theirs = ov_genai.Tokenizer(str(folder)), ov_genai.Tokenizer(str(gguf))
    texts = list(SAMPLES)
    if theirs.chat_template:
        history = ov_genai.ChatHistory([{"role": "user", "content": SAMPLES[0]}, {"role": "assistant", "content": SAMPLES[1]},
                                        {"role": "user", "content": SAMPLES[2]}])
        texts.append(theirs.apply_chat_template(history, add_generation_prompt=True))
    for text in texts:
        for special in (True, False):
            a = list(ours.encode(text, add_special_tokens=special).input_ids.data[0])
            b = list(theirs.encode(text, add_special_tokens=special).input_ids.data[0])
            if a != b:
                raise ExportFailed(
                    f"The exported tokenizer does not match the gguf's for {text[:60]!r} "
                    f"(add_special_tokens={special}): {a[:12]}... vs {b[:12]}...",
                    "Export from the original Hugging Face checkpoint instead of the gguf.",
                )


def _read_marker(folder: Path) -> dict:
    return read_json(folder / MARKER)


def _write_marker(folder: Path, source: str, options: ExportOptions, notes: list[str], seconds: float) -> None:
    data = {"source": _source_key(source), "options": dataclasses.asdict(options), "notes": notes,
            "seconds": round(seconds, 1), "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (folder / MARKER).write_text(json.dumps(data, indent=2) + "\n")


def _move_into_place(staged: Path, out: Path, work: Path) -> None:
    """Rename the finished folder to OUT; an old OUT (with --force) goes only once the new one is in."""
    if out.exists():
        out.rename(work / "previous")
    staged.rename(out)
