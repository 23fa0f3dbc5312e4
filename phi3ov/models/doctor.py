"""Check a model folder point by point, and repair what can be repaired.

`diagnose(folder)` looks at what OpenVINO GenAI needs to serve a chat model: the model IR,
the tokenizer and detokenizer IR, a chat template, stop tokens that end a turn (Phi-3's
`<|end|>`), the context length and the weight precision. It returns a `Report` whose `.ok`
says whether the folder can be served and whose `.problems` say what is wrong and how to fix
it. `repair(folder, report)` applies the fixes that need no download: converting the tokenizer
with openvino-tokenizers from the Hugging Face tokenizer files in the folder, and adding
missing end-of-turn tokens to generation_config.json. `phi3ov export` runs both on every
export; the app runs `diagnose` before serving.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelNotFound, ModelNotServable, reason
from .resolve import read_info

log = logging.getLogger(__name__)

MODEL_XML, MODEL_BIN = "openvino_model.xml", "openvino_model.bin"
TOKENIZER, DETOKENIZER = "openvino_tokenizer", "openvino_detokenizer"
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# Tokens that end an assistant turn in common chat templates. A template that writes one of
# them must also stop generation on it, or replies run on into an invented next turn.
TURN_END_TOKENS = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end_of_text|>", "<|endoftext|>")
FIX_TOKENIZER, FIX_STOP_TOKENS = "tokenizer", "stop_tokens"
INT4_TYPES = {"u4", "i4", "nf4", "f4e2m1", "u2", "i2"}
INT8_TYPES = {"u8", "i8", "f8e4m3", "f8e5m2"}


@dataclass(frozen=True)
class Check:
    """One point of the report. status: "ok", "warn" (serves, but not as well) or "fail"."""

    name: str
    status: str
    detail: str
    hint: str | None = None
    fix: str | None = None  # a key `repair` knows, when the problem can be repaired here

    @property
    def mark(self) -> str:
        return {"ok": "✓", "warn": "!", "fail": "✗"}[self.status]


@dataclass
class Report:
    folder: Path
    checks: list[Check] = field(default_factory=list)
    stop_token_ids: tuple[int, ...] = ()
    weights: dict[str, int] = field(default_factory=dict)  # weight values per precision class

    @property
    def ok(self) -> bool:
        """True when the folder can be served."""
        return not any(c.status == "fail" for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == "warn"]

    @property
    def fixable(self) -> list[Check]:
        return [c for c in self.checks if c.fix and c.status != "ok"]

    def text(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"Model folder {self.folder}"]
        for c in self.checks:
            lines.append(f"  {c.mark} {c.name:<{width}}  {c.detail}")
            if c.hint and c.status != "ok":
                lines.append(f"    {' ' * width}  → {c.hint}")
        lines.append("Ready to serve." if self.ok else f"Cannot serve: {len(self.problems)} problem(s).")
        return "\n".join(lines)

    def raise_if_not_servable(self) -> None:
        """For the app: turn the first blocking problem into a ModelNotServable."""
        if not self.ok:
            first = self.problems[0]
            raise ModelNotServable(
                f"{self.folder} cannot be served: {first.name}: {first.detail}.",
                f"Run `phi3ov doctor {self.folder}`" + (" --fix" if first.fix else "") + " for the full report.",
            )


def diagnose(folder: str | Path) -> Report:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelNotFound(f"No model folder at {folder}.", "Give the folder that holds openvino_model.xml.")
    report = Report(folder.resolve())
    add = report.checks.append
    add(_check_model_ir(folder, report))
    tok_check, tokenizer = _check_tokenizer_ir(folder)
    add(tok_check)
    template_check, template = _check_chat_template(folder, tokenizer)
    add(template_check)
    add(_check_stop_tokens(folder, tokenizer, template, report))
    add(_check_context(folder))
    return report


def _size(paths: list[Path]) -> str:
    return human_size(sum(p.stat().st_size for p in paths if p.exists()))


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def weight_precision(xml: Path) -> tuple[dict[str, int], int]:
    """Weight values per class ("int4", "int8", "float") read from the IR, and the .bin size it needs.

    Weights are the constants with every dimension above 1 (matrices and grouped matrices);
    that leaves out quantization scales and zero points ([rows, groups, 1]) and norms.
    """
    counts = {"int4": 0, "int8": 0, "float": 0}
    needed = 0
    for _, elem in ET.iterparse(xml):
        if elem.tag != "layer" or elem.get("type") != "Const":
            continue
        data = elem.find("data")
        if data is None:
            continue
        with contextlib.suppress(ValueError):
            needed = max(needed, int(data.get("offset", 0)) + int(data.get("size", 0)))
        etype = data.get("element_type", "")
        shape = [int(d) for d in data.get("shape", "").split(",") if d.strip().isdigit()]
        if len(shape) < 2 or min(shape) <= 1:
            continue
        n = 1
        for d in shape:
            n *= d
        if n < 1024:
            continue
        kind = "int4" if etype in INT4_TYPES else "int8" if etype in INT8_TYPES else "float"
        counts[kind] += n
        elem.clear()
    return counts, needed


def precision_summary(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "no weight matrices found"
    parts = [f"{kind} {100 * n / total:.0f}%" for kind, n in counts.items() if n]
    return f"{' · '.join(parts)} of {total / 1e6:.1f} M weight values"


def _check_model_ir(folder: Path, report: Report) -> Check:
    xml, bin_ = folder / MODEL_XML, folder / MODEL_BIN
    missing = [p.name for p in (xml, bin_) if not p.exists()]
    if missing:
        return Check("model IR", "fail", f"missing {', '.join(missing)}",
                     "Export the model: `phi3ov export MODEL_ID FOLDER`, or download a converted one: "
                     "`phi3ov download OpenVINO/Phi-3-mini-4k-instruct-int4-ov`.")
    try:
        counts, needed = weight_precision(xml)
    except ET.ParseError as err:
        return Check("model IR", "fail", f"{MODEL_XML} is not valid IR ({err})", "Export or download it again.")
    report.weights = counts
    if bin_.stat().st_size < needed:
        return Check("model IR", "fail", f"{MODEL_BIN} is truncated ({_size([bin_])}, the IR needs {human_size(needed)})",
                     "The download or export was cut short: run it again.")
    return Check("model IR", "ok", f"{MODEL_XML} + .bin, {_size([xml, bin_])}; weights {precision_summary(counts)}")


def _has_hf_tokenizer(folder: Path) -> bool:
    return any((folder / f).exists() for f in HF_TOKENIZER_FILES)


def _check_tokenizer_ir(folder: Path):
    missing = [f"{n}.{ext}" for n in (TOKENIZER, DETOKENIZER) for ext in ("xml", "bin") if not (folder / f"{n}.{ext}").exists()]
    if missing:
        if _has_hf_tokenizer(folder):
            return Check("tokenizer IR", "fail", f"missing {', '.join(missing)} (OpenVINO GenAI cannot load the folder)",
                         f"Convert them from the tokenizer files here: `phi3ov doctor {folder} --fix`.",
                         FIX_TOKENIZER), None
        return Check("tokenizer IR", "fail", f"missing {', '.join(missing)}, and no Hugging Face tokenizer files to convert",
                     "Re-export with `phi3ov export` (it always writes them)."), None
    try:
        import openvino_genai as ov_genai

        tokenizer = ov_genai.Tokenizer(str(folder))
    except Exception as err:  # noqa: BLE001 - any load failure is the finding
        return Check("tokenizer IR", "fail", f"OpenVINO GenAI cannot load it: {reason(err)}",
                     "Re-export with `phi3ov export`" + (f", or `phi3ov doctor {folder} --fix`" if _has_hf_tokenizer(folder) else ""),
                     FIX_TOKENIZER if _has_hf_tokenizer(folder) else None), None
    return Check("tokenizer IR", "ok", f"{TOKENIZER}.xml + {DETOKENIZER}.xml"), tokenizer


def _check_chat_template(folder: Path, tokenizer) -> tuple[Check, str | None]:
    template = tokenizer.chat_template if tokenizer is not None else None
    if tokenizer is None:
        from .resolve import chat_template

        template = chat_template(folder)
        if template:
            return Check("chat template", "ok", "present in the Hugging Face files (checked again once the tokenizer IR exists)"), template
    if not template:
        return Check("chat template", "fail", "none: a conversation cannot be formatted for this model (a base model?)",
                     "Use an instruct/chat model, or re-export from a source whose tokenizer has a chat template."), None
    try:
        import openvino_genai as ov_genai

        history = ov_genai.ChatHistory([{"role": "user", "content": "Hi"}])
        prompt = tokenizer.apply_chat_template(history, add_generation_prompt=True)
    except Exception as err:  # noqa: BLE001
        return Check("chat template", "fail", f"OpenVINO GenAI cannot apply it: {reason(err)}",
                     "Re-export with `phi3ov export` (it writes a template OpenVINO GenAI can read)."), template
    markers = [m for m in ("<|user|>", "<|im_start|>", "<|start_header_id|>", "<start_of_turn>") if m in prompt]
    return Check("chat template", "ok", f"{len(template)} characters" + (f", turns marked by {markers[0]}" if markers else "")), template


def _generation_eos(folder: Path) -> list[int]:
    try:
        data = json.loads((folder / "generation_config.json").read_text())
    except (OSError, ValueError):
        return []
    eos = data.get("eos_token_id")
    if isinstance(eos, int):
        return [eos]
    return [int(e) for e in eos if isinstance(e, int)] if isinstance(eos, list) else []


def turn_end_ids(tokenizer, template: str) -> dict[str, int]:
    """End-of-turn tokens the template writes, with their ids (single-token ones only)."""
    found: dict[str, int] = {}
    for token in TURN_END_TOKENS:
        if token in template:
            ids = list(tokenizer.encode(token, add_special_tokens=False).input_ids.data[0])
            if len(ids) == 1:
                found[token] = int(ids[0])
    return found


def _check_stop_tokens(folder: Path, tokenizer, template: str | None, report: Report) -> Check:
    if tokenizer is None:
        return Check("stop tokens", "warn", "not checked: needs the tokenizer IR")
    stops = set(_generation_eos(folder))
    eos = int(tokenizer.get_eos_token_id())
    if eos >= 0:
        stops.add(eos)
    report.stop_token_ids = tuple(sorted(stops))
    wanted = turn_end_ids(tokenizer, template or "")
    missing = {t: i for t, i in wanted.items() if i not in stops}
    names = ", ".join(f"{tokenizer.decode([i], skip_special_tokens=False) or '?'} ({i})" for i in sorted(stops))
    if missing:
        listed = ", ".join(f"{t} ({i})" for t, i in missing.items())
        return Check("stop tokens", "warn",
                     f"the chat template ends turns with {listed}, but generation stops only at {names or 'nothing'}",
                     f"phi3ov adds it when serving; other runtimes run on past the turn. Fix: `phi3ov doctor {folder} --fix`.",
                     FIX_STOP_TOKENS)
    if not stops:
        return Check("stop tokens", "fail", "no end-of-sequence token: every reply would run to the length limit",
                     "Re-export with `phi3ov export`, which writes generation_config.json.")
    return Check("stop tokens", "ok", f"generation stops at {names}")


def _check_context(folder: Path) -> Check:
    info = read_info(folder)
    if info.context_length_source == "default":
        return Check("context length", "warn", f"not recorded in the folder; assuming {info.context_length} tokens",
                     "Add config.json (an optimum export has it) to use the model's real context.")
    return Check("context length", "ok", f"{info.context_length} tokens (from {info.context_length_source})")


def check_precision(device: str, properties: dict[str, str]) -> Check:
    """Not the folder's: what the device will compute in (`phi3ov doctor` adds it to the report)."""
    from ..precision import resolve

    return Check("inference precision", "ok", f"{device} computes in {resolve(device, properties)}")


# --- repairs --------------------------------------------------------------------------------


def repair(folder: str | Path, report: Report | None = None) -> list[str]:
    """Apply every available fix; returns what was done. Re-run `diagnose` afterwards."""
    folder = Path(folder)
    report = report or diagnose(folder)
    done: list[str] = []
    keys = [c.fix for c in report.fixable]
    if FIX_TOKENIZER in keys:
        done.append(convert_tokenizer(folder))
    if FIX_STOP_TOKENS in keys or (FIX_TOKENIZER in keys):
        added = fix_stop_tokens(folder)
        if added:
            done.append(f"added stop token(s) {added} to generation_config.json")
    return done


def convert_tokenizer(folder: Path, source: str | Path | None = None) -> str:
    """Write tokenizer and detokenizer IR with openvino-tokenizers from a Hugging Face tokenizer."""
    try:
        import openvino as ov
        from openvino_tokenizers import convert_tokenizer as ov_convert
        from transformers import AutoTokenizer
    except ImportError as err:
        raise ModelNotServable(
            f"Converting the tokenizer needs transformers and openvino-tokenizers ({err}).",
            "Install the export extra: `pip install -e '.[export]'` (see the Makefile), then run this again.",
        ) from None
    src = str(source or folder)
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=True)
        hf_tokenizer.padding_side = "left"
        ov_tokenizer, ov_detokenizer = ov_convert(hf_tokenizer, with_detokenizer=True)
    except Exception as err:  # noqa: BLE001
        raise ModelNotServable(
            f"openvino-tokenizers could not convert the tokenizer of {src}: {type(err).__name__}: {str(err)[:300]}",
            "Re-export the model with `phi3ov export`.",
        ) from None
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=folder))
    try:
        ov.save_model(ov_tokenizer, str(staging / f"{TOKENIZER}.xml"))
        ov.save_model(ov_detokenizer, str(staging / f"{DETOKENIZER}.xml"))
        for f in staging.iterdir():
            f.replace(folder / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"converted the tokenizer and detokenizer to IR with openvino-tokenizers (from {src})"


def fix_stop_tokens(folder: Path) -> list[int]:
    """Add the template's end-of-turn tokens to generation_config.json; returns the ids added."""
    import openvino_genai as ov_genai

    tokenizer = ov_genai.Tokenizer(str(folder))
    wanted = turn_end_ids(tokenizer, tokenizer.chat_template or "")
    path = folder / "generation_config.json"
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        data = {}
    eos = _generation_eos(folder)
    if not eos and int(tokenizer.get_eos_token_id()) >= 0:
        eos = [int(tokenizer.get_eos_token_id())]
    added = [i for i in wanted.values() if i not in eos]
    if not added and path.exists():
        return []
    data["eos_token_id"] = eos + added if len(eos + added) != 1 else (eos + added)[0]
    if path.is_symlink():  # a Hub cache file: replace the link, never write into the shared blob
        path.unlink()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return added
