"""Model folders for tests."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def hardlinked_copy(src: Path, dest: Path, name: str) -> Path:
    """A second model folder without copying the weights: hard links, and its own name."""
    shutil.copytree(src, dest, copy_function=os.link)
    sidecar = dest / "phi3ov.json"
    data = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    sidecar.unlink(missing_ok=True)  # a new file, not a write through the link into the original
    sidecar.write_text(json.dumps({**data, "name": name}))
    return dest
