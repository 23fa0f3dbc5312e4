"""Pre-converted OpenVINO models from the Hugging Face Hub.

`download(repo_id, out)` is the one way a Hub id becomes a local folder, for `phi3ov download`
and for `--model REPO_ID` alike. It looks at the repo's file list before fetching anything (a
repo without `openvino_model.xml` is refused before gigabytes of PyTorch weights arrive), shows
huggingface_hub's progress bars, resumes an interrupted download (huggingface_hub keeps the
partial files), fails within seconds when the Hub cannot be reached, and falls back to a copy
already on disk when offline.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import DownloadFailed, ModelNotFound

log = logging.getLogger(__name__)

OV_MODEL = "openvino_model.xml"
TIMEOUT_S = "10"  # per HTTP request; huggingface_hub's defaults wait much longer on a dead network
OFFLINE_HINT = (
    "You seem to be offline or the Hub is unreachable. Check your connection (or HF_ENDPOINT / proxy "
    "settings), or serve a local folder: `python app.py --model PATH` (`phi3ov export` makes one)."
)


def _quick_network_settings() -> None:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", TIMEOUT_S)
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", TIMEOUT_S)


def download(repo_id: str, out: Path | None = None, *, revision: str | None = None) -> Path:
    """Download an OpenVINO model repo; returns the local folder (OUT, or the Hub cache)."""
    _quick_network_settings()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local_dir = str(out) if out else None
    try:
        files = _repo_files(repo_id, revision)
        if OV_MODEL not in files:
            raise ModelNotFound(
                f"{repo_id} is not an OpenVINO model (the repo has no {OV_MODEL}).",
                f"Export it instead: `phi3ov export {repo_id} ./model/{repo_id.split('/')[-1]}-int4`, "
                "or pick a converted one, e.g. OpenVINO/Phi-3-mini-4k-instruct-int4-ov.",
            )
        log.info("Downloading %s%s", repo_id, f" to {out}" if out else " into the Hugging Face cache")
        path = snapshot_download(repo_id, revision=revision, local_dir=local_dir)
    except GatedRepoError:
        raise DownloadFailed(
            f"{repo_id} is gated: the Hub wants you to accept its terms first.",
            "Accept them on the model page, then `hf auth login` (or set HF_TOKEN) and run this again.",
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFound(
            f"No model {repo_id} on the Hugging Face Hub (or it is private).",
            "Check the id, e.g. OpenVINO/Phi-3-mini-4k-instruct-int4-ov; for a private repo set HF_TOKEN.",
        ) from None
    except RevisionNotFoundError:
        raise ModelNotFound(f"{repo_id} has no revision {revision!r}.", "Leave --revision out for the main branch.") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError, *_network_errors()) as err:
        cached = _cached_copy(repo_id, revision, local_dir)
        if cached is not None:
            log.warning("The Hub is unreachable (%s); using the copy already on disk: %s", _first_line(err), cached)
            return cached
        raise DownloadFailed(
            f"Could not download {repo_id}: no connection to the Hugging Face Hub ({_first_line(err)}).",
            OFFLINE_HINT,
        ) from None
    folder = Path(path)
    if not (folder / OV_MODEL).exists():
        raise ModelNotFound(f"The download of {repo_id} holds no {OV_MODEL}.", f"Run `phi3ov doctor {folder}`.")
    return folder


def _network_errors() -> tuple[type[BaseException], ...]:
    try:  # huggingface_hub >= 1.0 talks through httpx, whose errors are not OSError
        import httpx
    except ImportError:
        return ()
    return (httpx.HTTPError,)


def _repo_files(repo_id: str, revision: str | None) -> set[str]:
    from huggingface_hub import HfApi

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("HF_HUB_OFFLINE is set")
    info = HfApi().model_info(repo_id, revision=revision, files_metadata=False, timeout=float(TIMEOUT_S))
    return {s.rfilename for s in (info.siblings or [])}


def _cached_copy(repo_id: str, revision: str | None, local_dir: str | None) -> Path | None:
    """A complete earlier download of this repo, if there is one (used when offline)."""
    if local_dir and (Path(local_dir) / OV_MODEL).exists():
        return Path(local_dir)
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, revision=revision, local_dir=local_dir, local_files_only=True))
    except Exception:  # noqa: BLE001 - nothing usable on disk
        return None
    return path if (path / OV_MODEL).exists() else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    detail = text[0][:200] if text else ""
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__
