"""The model menu: what this machine can serve, and switching the served model (real engines)."""

from __future__ import annotations

import json

import pytest
from support.folders import hardlinked_copy

from phi3ov.models.catalog import available


@pytest.fixture(scope="module")
def models_dir(bundled_ref, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    hardlinked_copy(bundled_ref.path, root / "team" / "smol-copy", "smol-copy")
    (root / "broken").mkdir()
    (root / "broken" / "openvino_model.xml").write_text("<net/>")  # incomplete: not listed
    return root


def test_the_catalog_lists_the_served_model_first_then_what_is_found(bundled_ref, models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # only what this test puts there
    monkeypatch.chdir(tmp_path)  # no ./model here
    choices = available(tmp_path, models_dir, (), (bundled_ref.name, bundled_ref.path))
    assert [c.name for c in choices] == [bundled_ref.name, "smol-copy"]
    assert choices[1].where == "--models-dir" and choices[1].path == (models_dir / "team" / "smol-copy").resolve()
    only = available(tmp_path, models_dir, ("no-such-model",), (bundled_ref.name, bundled_ref.path))
    assert [c.name for c in only] == [bundled_ref.name]  # --models restricts; the served one stays


def test_switching_keeps_one_model_resident_and_refuses_while_a_reply_runs(bundled_ref, models_dir, tmp_path, greedy):
    from phi3ov.engine.switching import switchable
    from phi3ov.errors import BadOptions, ModelNotFound
    from phi3ov.server import make_engine
    from phi3ov.settings import ServerSettings

    settings = ServerSettings(cache_dir=tmp_path, models_dir=models_dir, max_num_seqs=2)
    engine = switchable(make_engine(settings, bundled_ref), bundled_ref, lambda ref: make_engine(settings, ref),
                        tmp_path, models_dir, ())
    try:
        before = "".join(engine.chat([{"role": "user", "content": "Say hi."}], greedy))
        first = engine.current
        reply = engine.chat([{"role": "user", "content": "Write a long story."}], greedy)
        stream = iter(reply)
        next(stream)
        with pytest.raises(BadOptions, match="being written"):
            engine.switch("smol-copy")
        stream.close()
        with pytest.raises(ModelNotFound):
            engine.switch("no-such-model")
        engine.switch("smol-copy")
        assert engine.name == "smol-copy" and engine.current is not first
        assert first._closed  # the first model was closed before the second loaded
        after = "".join(engine.chat([{"role": "user", "content": "Say hi."}], greedy))
        assert after == before  # the same weights answer the same way
    finally:
        engine.close()


def test_the_api_lists_the_same_models_and_a_request_for_one_not_loaded_is_a_404(models_dir, tmp_path):
    import urllib.error
    import urllib.request

    from phi3ov.process import ServerProcess

    with ServerProcess(["--models-dir", str(models_dir), "--models", "smol-copy"],
                       log_path=tmp_path / "server.log") as server:
        with urllib.request.urlopen(f"{server.url}/v1/models", timeout=10) as response:
            cards = json.load(response)["data"]
        assert [(c["id"], c["loaded"]) for c in cards] == [("SmolLM2-135M-Instruct", True), ("smol-copy", False)]
        body = json.dumps({"model": "smol-copy", "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(f"{server.url}/v1/chat/completions", body,
                                         {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        error = json.loads(refused.value.read())["error"]
        assert refused.value.code == 404 and error["code"] == "model_not_loaded" and "model menu" in error["message"]
