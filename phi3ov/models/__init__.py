"""Model folders: where a model comes from, what a folder holds, whether it can be served, how one is made.

    resolve.py   --model to a local OpenVINO folder (exported folder, .gguf converted once, Hub id, bundled)
                 and what a folder holds (context length, chat template, stop tokens)
    hub.py       downloads from the Hugging Face Hub, resumable, with a clear error offline
    gguf.py      a .gguf read as a transformers checkpoint (for exporting it with optimum-intel)
    catalog.py   the models this machine can serve, for the model menu and /v1/models
    doctor.py    a folder checked point by point, and repaired where it can be
    export.py    optimum-intel's export, staged and moved into place atomically

No argparse here: the commands (export, download, doctor) are in phi3ov/commands.py.
"""

from .resolve import (
    HUB_ID,
    SEED_EXPORT_DIR,
    ModelInfo,
    ModelRef,
    bundled,
    bundled_gguf,
    chat_template,
    convert_gguf,
    display_name,
    is_complete,
    read_info,
    read_json,
    resolve,
    weight_group_size,
)

__all__ = ["HUB_ID", "SEED_EXPORT_DIR", "ModelInfo", "ModelRef", "bundled", "bundled_gguf", "chat_template",
           "convert_gguf", "display_name", "is_complete", "read_info", "read_json", "resolve",
           "weight_group_size"]
