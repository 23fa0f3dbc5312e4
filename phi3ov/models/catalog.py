"""The models this machine can serve, for the model menu and /v1/models.

Found without loading anything: the bundled model (once converted into the cache), exported
folders under ./model, folders under --models-dir, GGUFs converted into the cache, and OpenVINO
models downloaded from the Hub (the Hugging Face cache). A folder counts when it is complete
(model, weights, tokenizer, detokenizer). `--models` keeps only the names or folders it lists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .resolve import SEED_EXPORT_DIR, display_name, is_complete

SEARCH_DEPTH = 4  # folders below a root that may hold a model


@dataclass(frozen=True)
class Choice:
    name: str
    path: Path
    where: str  # "bundled", "./model", "--models-dir", "cache", "hub"


def _folders(root: Path, depth: int = SEARCH_DEPTH) -> Iterable[Path]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if "openvino_model.xml" in filenames and is_complete(here):
            dirnames.clear()
            yield here
        elif len(here.relative_to(root).parts) >= depth:
            dirnames.clear()


def hub_cache() -> Path:
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    return Path(os.environ.get("HF_HUB_CACHE") or home / "hub")


def available(cache_dir: Path, models_dir: Path | None = None, only: Iterable[str] = (),
              current: tuple[str, Path] | None = None) -> list[Choice]:
    """Every servable model found, the one being served first; names are unique."""
    found: list[tuple[Path, str]] = []
    if current:
        found.append((current[1], "serving"))
    found += [(p, "./model") for p in _folders(SEED_EXPORT_DIR.parent.parent)]
    if models_dir:
        found += [(p, "--models-dir") for p in _folders(Path(models_dir).expanduser())]
    # Converted GGUFs: one per name (a converter update leaves older conversions behind), the newest.
    newest: dict[str, Path] = {}
    for p in sorted(_folders(cache_dir / "models", depth=1), key=lambda p: p.stat().st_mtime):
        newest[display_name(p)] = p
    found += [(p, "cache") for p in newest.values()]
    found += [(p, "hub") for p in _folders(hub_cache(), depth=3)]
    wanted = {w.strip() for w in only if w.strip()}
    wanted_paths = {Path(w).expanduser().resolve() for w in wanted}
    choices: list[Choice] = []
    seen_paths: set[Path] = set()
    names: set[str] = set()
    for path, where in found:
        path = path.resolve()
        if path in seen_paths:
            continue
        seen_paths.add(path)
        serving = where == "serving"  # listed first, so no other entry has its path
        name = current[0] if serving and current else display_name(path)
        if wanted and not serving and not ({name, str(path)} & wanted or path in wanted_paths):
            continue
        if where == "cache" and name in names:  # the same model is already listed
            continue
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name} ({n})", n + 1
        names.add(unique)
        choices.append(Choice(unique, path, where))
    return choices
