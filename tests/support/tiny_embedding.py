"""A tiny text-embedding model built here (no download) for openvino_genai.TextEmbeddingPipeline: the bundled
model's tokenizer, and a last_hidden_state that is a random vector per token (masked), so mean pooling gives a
bag-of-tokens embedding: texts that share tokens are similar."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("openvino_tokenizer.xml", "openvino_tokenizer.bin", "openvino_detokenizer.xml",
                   "openvino_detokenizer.bin")


def build(out: Path, dim: int = 64) -> Path:
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai
    from openvino import opset13 as ops

    from phi3ov import models

    source = models.bundled().path
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, out / name)
    vocab = len(ov_genai.Tokenizer(str(source)).get_vocab())
    ids = ops.parameter([-1, -1], ov.Type.i64, name="input_ids")
    mask = ops.parameter([-1, -1], ov.Type.i64, name="attention_mask")
    table = ops.constant(np.random.default_rng(0).standard_normal((vocab + 64, dim)).astype(np.float32))
    hidden = ops.multiply(ops.gather(table, ids, 0), ops.convert(ops.unsqueeze(mask, -1), ov.Type.f32))
    hidden.output(0).get_tensor().set_names({"last_hidden_state"})
    ov.save_model(ov.Model([hidden], [ids, mask], "tiny-embedding"), out / "openvino_model.xml")
    return out
