"""A .gguf file as a Hugging Face checkpoint that optimum-intel can export.

transformers loads a gguf's weights correctly, but the tokenizer it builds from the gguf can
be wrong in ways that openvino-tokenizers then copies silently (for SmolLM2: `<|im_start|>` as
eos, no pad, a SentencePiece decoder on a byte-level vocabulary). Here the special tokens are
set from the gguf's own metadata ids and a byte-level ("gpt2") vocabulary gets byte-level
post-processing and decoding. export.py then checks the exported ids against OpenVINO GenAI's
reading of the same gguf.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ExportFailed

log = logging.getLogger(__name__)


def gguf_metadata(gguf: Path) -> dict:
    """The tokenizer and architecture fields of a gguf (vocabulary arrays left out)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf))
    out = {}
    for key, value in reader.fields.items():
        if key.startswith(("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")):
            continue
        if key.startswith(("tokenizer.", "general.architecture")) or key.endswith("context_length"):
            try:
                out[key] = value.contents()
            except Exception:  # noqa: BLE001 - an unreadable field is simply left out
                continue
    return out


def load_tokenizer(gguf: Path, meta: dict | None = None):
    """A PreTrainedTokenizerFast from the gguf with its special tokens and decoder set right."""
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast

    meta = meta if meta is not None else gguf_metadata(gguf)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(gguf.parent), gguf_file=gguf.name)

    def token(key: str) -> str | None:
        idx = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokenizer.convert_ids_to_tokens(int(idx)) if isinstance(idx, int) and idx >= 0 else None

    eos, bos, unk = token("eos"), token("bos"), token("unknown")
    pad = token("padding") or eos
    if eos is None:
        raise ExportFailed(f"{gguf.name} names no end-of-sequence token.", "Export from the original Hugging Face checkpoint.")
    tokenizer.eos_token, tokenizer.pad_token = eos, pad
    if bos:
        tokenizer.bos_token = bos
    if unk:
        tokenizer.unk_token = unk
    backend = tokenizer.backend_tokenizer
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    if meta.get("tokenizer.ggml.model") == "gpt2":  # byte-level BPE (GPT-2, SmolLM2, Qwen, Llama 3)
        backend.decoder = decoders.ByteLevel()
        byte_level = processors.ByteLevel(trim_offsets=False)
        if add_bos:
            template = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                     special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
            backend.post_processor = processors.Sequence([byte_level, template])
        else:
            backend.post_processor = byte_level
    template = meta.get("tokenizer.chat_template")
    if template and not tokenizer.chat_template:
        tokenizer.chat_template = template
    return tokenizer


def gguf_to_checkpoint(gguf: Path, dest: Path) -> Path:
    """Write a Hugging Face checkpoint (fp32 weights, fixed tokenizer, generation config) to DEST."""
    from transformers import AutoModelForCausalLM

    meta = gguf_metadata(gguf)
    tokenizer = load_tokenizer(gguf, meta)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as err:  # noqa: BLE001
        raise ExportFailed(f"transformers cannot load {gguf.name}: {type(err).__name__}: {str(err)[:300]}",
                           "transformers reads the common llama-family ggufs; export the original checkpoint otherwise.") from None
    eos_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids(tokenizer.pad_token)
    if tokenizer.bos_token:
        model.generation_config.bos_token_id = tokenizer.convert_tokens_to_ids(tokenizer.bos_token)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = model.generation_config.pad_token_id
    context = next((v for k, v in meta.items() if k.endswith(".context_length") and isinstance(v, int)), None)
    if context and not getattr(model.config, "max_position_embeddings", None):
        model.config.max_position_embeddings = context
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    del model
    return dest
