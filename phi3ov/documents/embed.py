"""Passages ranked by meaning as well as by words: `--embedding-model FOLDER`, an OpenVINO text-embedding model run by
openvino_genai.TextEmbeddingPipeline (mean pooling, normalized vectors; cosine similarity to the question).

One pipeline per (folder, device) per process, loaded on first use and shared by every session; a lock keeps its
calls one at a time. The folder is checked when the server starts, so a wrong path is refused there.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from ..errors import BadOptions

NEEDED = ("openvino_model.xml", "openvino_tokenizer.xml")


class Embedder:
    def __init__(self, folder: Path, device: str = "CPU"):
        self.folder, self.device = Path(folder), device
        missing = [name for name in NEEDED if not (self.folder / name).is_file()]
        if missing:
            raise BadOptions(f"--embedding-model {self.folder} is not an OpenVINO text-embedding model folder: "
                             f"{', '.join(missing)} missing.",
                             "Export one with `optimum-cli export openvino --task feature-extraction --model M OUT` "
                             "(with its tokenizer), or leave the flag out for BM25 alone.")
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def pipeline(self) -> Any:
        if self._pipeline is None:
            import openvino_genai as ov_genai

            config = ov_genai.TextEmbeddingPipeline.Config()
            config.pooling_type = ov_genai.TextEmbeddingPipeline.PoolingType.MEAN
            config.normalize = True
            self._pipeline = ov_genai.TextEmbeddingPipeline(str(self.folder), self.device, config)
        return self._pipeline

    def similarities(self, texts: list[str], question: str) -> list[float]:
        """The cosine similarity of each text to the question."""
        import numpy as np

        if not texts:
            return []
        with self._lock:
            pipeline = self.pipeline()
            passages = np.asarray(pipeline.embed_documents(texts), dtype=np.float32)
            query = np.asarray(pipeline.embed_query(question), dtype=np.float32)
        return [float(s) for s in passages @ query]


@functools.cache
def embedder(folder: Path, device: str = "CPU") -> Embedder:
    """The process's one Embedder for this folder and device."""
    return Embedder(folder, device)
