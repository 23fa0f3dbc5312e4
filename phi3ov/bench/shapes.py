"""A Phi-3-mini-shaped model with random weights, built offline, in every format the peers bench compares.

No real Phi-3 can be downloaded here (no Hugging Face Hub), yet the interesting speed regime is
Phi-3-mini's: every generated token streams the weight matrices of a 3072-wide model through memory.
`build("phi3-mini", cache, layers=4)` makes a model of exactly that width (hidden 3072, MLP 8192,
32 heads, vocabulary 32064) with fewer layers, seeded random weights (torch.manual_seed(0)), and
exports it the way each engine's users would:

- "hf": a transformers checkpoint (Phi3ForCausalLM, fused qkv / gate_up like the real one, float16)
  with a Llama-style SentencePiece tokenizer trained here on the standard library's Python sources
  (32000 pieces plus Phi-3's chat tokens at Phi-3's ids, `<|end|>` = 32007), Phi-3's chat template
  and stop tokens. The model's vocabulary stays 32064, as in Phi-3; ids past 32010 are unused.
- "Q4_K_M", "Q4_0": GGUFs made by llama.cpp's own convert_hf_to_gguf.py (f16, from the
  llama-cpp-python sdist) and quantized by llama.cpp's quantizer in the peers venv.
- "ov-seed": `phi3ov export` with the seed's flags (int4, group 128, ratio 0.6, sym).
- "ov-int4": `phi3ov export` all int4 (ratio 1.0, group 128, sym, --all-layers: embeddings and
  lm_head too, as llama.cpp's Q4 files do; without --all-layers if that export fails).

Every artefact is made in a temporary folder, checked (OpenVINO GenAI and llama.cpp each load it and
generate 8 tokens) and only then renamed into place; a marker written last makes a second call free.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BadOptions, ExportFailed

SHAPES = {"phi3-mini": dict(hidden_size=3072, intermediate_size=8192, num_attention_heads=32,
                            num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096,
                            original_max_position_embeddings=4096, rms_norm_eps=1e-5, sliding_window=2047)}
MARKER = "shapes.json"
LLAMA_CPP_VERSION = "0.3.36"  # the peers venv's llama-cpp-python; its sdist carries convert_hf_to_gguf.py
QUANTS = ("Q4_K_M", "Q4_0")
OV_EXPORTS = {
    "ov-seed": ["--weight-format", "int4", "--group-size", "128", "--ratio", "0.6", "--sym"],
    "ov-int4": ["--weight-format", "int4", "--group-size", "128", "--ratio", "1.0", "--sym", "--all-layers"],
}
PHI3_TOKENS = {32000: "<|endoftext|>", 32001: "<|assistant|>", 32002: "<|placeholder1|>",
               32003: "<|placeholder2|>", 32004: "<|placeholder3|>", 32005: "<|placeholder4|>",
               32006: "<|system|>", 32007: "<|end|>", 32008: "<|placeholder5|>", 32009: "<|placeholder6|>",
               32010: "<|user|>"}
CHAT_TEMPLATE = (  # Phi-3-mini-4k-instruct's
    "{% for message in messages %}{% if message['role'] in ['system', 'user', 'assistant'] %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

BUILD_MODULES = ("torch", "transformers", "sentencepiece")  # what writing a shape's checkpoint imports

QUANTIZE = """import ctypes, sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params)))
"""
LLAMA_CHECK = """import itertools, json, sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)
ids = llm.tokenize("<|user|>\\nHello<|end|>\\n<|assistant|>\\n".encode(), special=True)
out = list(itertools.islice(llm.generate(ids, top_k=1, temp=0.0), 8))
end = llm.tokenize(b"<|end|>", add_bos=False, special=True)
print(json.dumps({"n_vocab": llm.n_vocab(), "generated": len(out), "end": end}))
"""
OV_CHECK = """import json, sys, openvino_genai
pipe = openvino_genai.LLMPipeline(sys.argv[1], "CPU")
config = pipe.get_generation_config()
stops_at_end = 32007 in config.stop_token_ids
config.max_new_tokens, config.ignore_eos, config.do_sample = 8, True, False
result = pipe.generate(["Hello, who are you?"], config)
print(json.dumps({"generated": result.perf_metrics.get_num_generated_tokens(), "stops_at_end": stops_at_end}))
"""


def build(shape: str, cache: Path, *, layers: int = 4, log=print, gguf: bool = True) -> dict[str, Path]:
    """Build (or reuse) the `shape` model with `layers` layers in cache/shape/<layers>l; returns its paths.
    `gguf=False`: the checkpoint and the OpenVINO exports only (the layer breakdown needs no llama.cpp)."""
    if shape not in SHAPES:
        raise BadOptions(f"Unknown model shape {shape!r}.", f"Choose one of: {', '.join(SHAPES)}.")
    if layers < 1:
        raise BadOptions(f"--layers must be at least 1, got {layers}.")
    root = Path(cache).expanduser().absolute() / shape / f"{layers}l"
    paths = {"hf": root / "hf", **{q: root / f"{shape}-{layers}l-{q}.gguf" for q in QUANTS},
             **{name: root / name for name in OV_EXPORTS}}
    if not gguf:
        paths = {name: path for name, path in paths.items() if name not in QUANTS}
    if ((root / MARKER).exists() or not gguf) and all(p.exists() for p in paths.values()):
        log(f"Reusing the {shape} ({layers} layers, random weights) model in {root}")
        return paths
    _check_build_tools(shape)
    if gguf:
        from .peers import peers_python  # raises PeersMissing ("run `make peers` first") before any work

        python = peers_python()
    root.mkdir(parents=True, exist_ok=True)
    started, notes = time.perf_counter(), []
    _step(paths["hf"], f"transformers checkpoint ({layers} layers, float16)", log,
          lambda tmp: _write_checkpoint(tmp, SHAPES[shape], layers))
    if gguf and not all(paths[q].exists() for q in QUANTS):
        tools = _convert_tools(Path(cache).expanduser().absolute(), log)
        with tempfile.TemporaryDirectory(prefix=".f16.", dir=root) as work:
            f16 = Path(work) / "f16.gguf"  # only the quantized files are kept
            log("Converting to an f16 GGUF (llama.cpp's convert_hf_to_gguf.py) ...")
            # a model name with "phi3" in it makes llama.cpp rstrip the chat tokens, as Phi-3's tokenizer does
            _run([sys.executable, str(tools / "convert_hf_to_gguf.py"), str(paths["hf"]), "--outtype", "f16",
                  "--outfile", str(f16), "--model-name", f"{shape}-{layers}l-random"],
                 "convert_hf_to_gguf.py", env={"PYTHONPATH": str(tools / "gguf-py")})
            for q in QUANTS:
                _step(paths[q], f"GGUF {q} (llama.cpp's quantizer)", log,
                      lambda tmp, q=q: _quantize(python, f16, tmp, q))
    for name, flags in OV_EXPORTS.items():
        def export(tmp: Path, flags: list[str] = flags) -> None:
            _export(paths["hf"], tmp, flags)

        try:
            _step(paths[name], f"OpenVINO export {' '.join(flags)}", log, export)
        except ExportFailed as err:
            if "--all-layers" not in flags:
                raise
            notes.append(f"{name}: --all-layers failed ({err.message.splitlines()[0]}); exported without it.")
            log(notes[-1])
            flags = [f for f in flags if f != "--all-layers"]
            _step(paths[name], f"OpenVINO export {' '.join(flags)}", log, lambda tmp, f=flags: export(tmp, f))

    seconds = time.perf_counter() - started
    if not gguf:  # each step above is in place or absent, whole; the marker waits for the GGUFs too
        log(f"Built the {shape} model's OpenVINO exports ({layers} layers) in {root} in {seconds:.0f} s")
        return paths
    with _staged(root / MARKER) as marker:  # last: its presence means everything above is in place
        marker.write_text(json.dumps({
            "shape": shape, "layers": layers, "config": SHAPES[shape], "seed": 0,
            "seconds": round(seconds, 1), "paths": {k: p.name for k, p in paths.items()}, "notes": notes,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2) + "\n")
    log(f"Built the {shape} model ({layers} layers) in {root} in {seconds:.0f} s")
    return paths


def _check_build_tools(shape: str) -> None:
    """Before any work: the checkpoint is written with torch and transformers (the export extra) and its
    tokenizer trained with sentencepiece (the bench extra)."""
    missing = [name for name in BUILD_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise BadOptions(f"Building the {shape} model needs {', '.join(missing)}, which this environment lacks.",
                         "Run `make .venv/.bench` (the export and bench extras) once, then this command again; "
                         "`make bench-peers` installs them too.")


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A path in a temporary folder beside `final`, renamed to `final` when the block succeeds."""
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield work / final.name
        os.replace(work / final.name, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _step(final: Path, what: str, log, make: Callable[[Path], None]) -> None:
    """Make `final` (through a staged temporary path) unless it is already there."""
    if final.exists():
        return
    log(f"Building {what} ...")
    started = time.perf_counter()
    with _staged(final) as tmp:
        make(tmp)
    log(f"  {final.name}: {_size_mib(final):,.0f} MiB in {time.perf_counter() - started:.0f} s")


def _size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ExportFailed(f"{what} failed (exit {done.returncode}):\n{tail}", "See the output above.")
    return done.stdout


def _checked(cmd: list[str], what: str, **expected) -> None:
    """Run a check script that prints one JSON line; every `expected` key must match."""
    got = json.loads(_run(cmd, what).strip().splitlines()[-1])
    wrong = {k: got.get(k) for k, v in expected.items() if got.get(k) != v}
    if wrong:
        raise ExportFailed(f"{what}: expected {expected}, got {wrong}.")


# --- the transformers checkpoint --------------------------------------------------------------


def _training_text() -> Iterator[str]:
    """The standard library's top-level modules: English docstrings and code, always on disk."""
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="ignore")
        yield from (line for line in text.splitlines() if line.strip())


def _write_tokenizer(folder: Path) -> None:
    """Llama's SentencePiece recipe (BPE, byte fallback, 32000 pieces), Phi-3's chat tokens and template."""
    import sentencepiece as spm
    from transformers import AddedToken, LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_text(), model_prefix=str(folder / "tokenizer"), model_type="bpe",
        vocab_size=32000, byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", character_coverage=0.99995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=100_000, num_threads=1, minloglevel=2)
    (folder / "tokenizer.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, skip_tokens={"<unk>", "<s>", "</s>"})
    # legacy: "▁" before the text after every special token; with Phi-3's rstrip on the chat tokens this is
    # how both Phi-3's own tokenizer and llama.cpp (which rstrips them for a model named phi3) tokenize
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, legacy=True, add_bos_token=True,
                               add_eos_token=False, model_max_length=4096, padding_side="left")
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False, rstrip=_rstrip(t))
                          for _, t in sorted(PHI3_TOKENS.items())], special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = "<|end|>", "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    if [tokenizer.convert_tokens_to_ids(t) for t in PHI3_TOKENS.values()] != list(PHI3_TOKENS):
        raise ExportFailed("The chat tokens did not get Phi-3's ids (32000-32010).")
    sample = "def greet(name):\n    return f'Hello, {name}!'  # 42 \u00fcml\u00e4uts \U0001f642"
    if tokenizer.encode(sample, add_special_tokens=False) != sp.encode(sample):
        raise ExportFailed("The transformers tokenizer does not match its SentencePiece model.")
    tokenizer.save_pretrained(folder)
    # transformers 5 keeps these in tokenizer.json only; converters (llama.cpp's too) also read them here
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(add_bos_token=True, add_eos_token=False, legacy=True, added_tokens_decoder={
        str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": _rstrip(t),
                 "single_word": False, "special": True} for i, t in PHI3_TOKENS.items()})
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _rstrip(token: str) -> bool:
    """Phi-3's chat tokens swallow the whitespace after them (`<|user|>\\nHi` is `<|user|>`, `▁Hi`)."""
    return token != "<|endoftext|>"


def _write_checkpoint(folder: Path, spec: dict, layers: int) -> None:
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    folder.mkdir()
    _write_tokenizer(folder)
    config = Phi3Config(**spec, num_hidden_layers=layers, bos_token_id=1, eos_token_id=32000,
                        pad_token_id=32000)
    torch.manual_seed(0)
    model = Phi3ForCausalLM(config).to(torch.float16)
    model.save_pretrained(folder)
    stops = GenerationConfig(bos_token_id=1, eos_token_id=[32000, 32001, 32007], pad_token_id=32000)
    stops.save_pretrained(folder)
    del model


# --- llama.cpp: convert and quantize ----------------------------------------------------------


def _convert_tools(cache: Path, log) -> Path:
    """convert_hf_to_gguf.py with its `conversion` and `gguf-py` packages, from the llama-cpp-python sdist."""
    tools = cache / "llama.cpp-tools" / LLAMA_CPP_VERSION
    if (tools / "convert_hf_to_gguf.py").exists():
        return tools
    tools.parent.mkdir(parents=True, exist_ok=True)
    log(f"Fetching llama.cpp's convert_hf_to_gguf.py (llama-cpp-python {LLAMA_CPP_VERSION} sdist from PyPI)")
    with tempfile.TemporaryDirectory(dir=tools.parent) as download, _staged(tools) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
              "--disable-pip-version-check", f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-d", download],
             "pip download llama-cpp-python")
        prefix = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
        with tarfile.open(next(Path(download).glob("*.tar.gz"))) as sdist:
            for member in sdist.getmembers():
                rel = member.name.removeprefix(prefix)
                wanted = rel == "convert_hf_to_gguf.py" or rel.startswith(("conversion/", "gguf-py/gguf/"))
                if member.isfile() and member.name.startswith(prefix) and wanted and ".." not in rel:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_bytes(sdist.extractfile(member).read())
        if not (tmp / "convert_hf_to_gguf.py").exists():
            raise ExportFailed(f"The llama-cpp-python {LLAMA_CPP_VERSION} sdist has no "
                               "vendor/llama.cpp/convert_hf_to_gguf.py.")
    return tools


def _quantize(python: Path, f16: Path, out: Path, quant: str) -> None:
    _run([str(python), "-c", QUANTIZE, str(f16), str(out), quant], f"llama.cpp quantization to {quant}")
    _checked([str(python), "-c", LLAMA_CHECK, str(out)], f"llama.cpp loading {quant}",
             n_vocab=32064, generated=8, end=[32007])


# --- OpenVINO ---------------------------------------------------------------------------------


def _export(hf: Path, out: Path, flags: list[str]) -> None:
    """`phi3ov export` itself (a subprocess), so the folder is exactly what users get."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    _run([sys.executable, "-m", "phi3ov.cli", "export", str(hf), str(out), *flags], "phi3ov export", env=env)
    _checked([sys.executable, "-c", OV_CHECK, str(out)], "OpenVINO GenAI loading the export",
             generated=8, stops_at_end=True)
