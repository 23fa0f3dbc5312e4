"""doctor on the bundled model folder and on copies of it broken in the ways real folders break."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from phi3ov.cli import main
from phi3ov.errors import ModelNotFound, ModelNotServable
from phi3ov.models import doctor


@pytest.fixture
def copy_of_bundled(bundled_ref, tmp_path):
    """A copy of the bundled folder; the big weights file is linked, not copied."""
    folder = tmp_path / "model"
    folder.mkdir()
    for f in bundled_ref.path.iterdir():
        if f.name == "openvino_model.bin":
            (folder / f.name).symlink_to(f)
        else:
            shutil.copy2(f, folder / f.name)
    return folder


def test_bundled_folder_passes_point_by_point(bundled_ref, capsys):
    started = time.perf_counter()
    report = doctor.diagnose(bundled_ref.path)
    assert time.perf_counter() - started < 10  # cheap enough to run before every serve
    assert report.ok and not report.problems
    assert [c.name for c in report.checks] == ["model IR", "tokenizer IR", "chat template", "stop tokens", "context length"]
    assert 2 in report.stop_token_ids  # SmolLM2's <|im_end|>
    assert report.weights["int4"] > report.weights["float"]
    text = report.text()
    assert "<|im_end|> (2)" in text and "8192 tokens" in text and "Ready to serve." in text
    report.raise_if_not_servable()
    assert main(["doctor", str(bundled_ref.path)]) == 0
    assert "✓ tokenizer IR" in capsys.readouterr().out


def test_missing_tokenizer_ir_without_sources_says_to_re_export(copy_of_bundled, capsys):
    for f in copy_of_bundled.glob("openvino_*tokenizer.*"):
        f.unlink()
    report = doctor.diagnose(copy_of_bundled)
    assert not report.ok
    problem = report.problems[0]
    assert problem.name == "tokenizer IR" and problem.fix is None  # no tokenizer files to convert from
    assert "phi3ov export" in problem.hint
    with pytest.raises(ModelNotServable, match="tokenizer IR"):
        report.raise_if_not_servable()
    assert main(["doctor", str(copy_of_bundled), "--fix"]) == 1
    assert "Cannot serve" in capsys.readouterr().out


def test_truncated_weights_are_caught(copy_of_bundled, bundled_ref):
    (copy_of_bundled / "openvino_model.bin").unlink()
    with open(bundled_ref.path / "openvino_model.bin", "rb") as src:
        (copy_of_bundled / "openvino_model.bin").write_bytes(src.read(1_000_000))
    report = doctor.diagnose(copy_of_bundled)
    assert [c.name for c in report.problems] == ["model IR"]
    assert "truncated" in report.problems[0].detail


def test_missing_model_and_context_are_reported(tmp_path):
    with pytest.raises(ModelNotFound):
        doctor.diagnose(tmp_path / "nowhere")
    report = doctor.diagnose(tmp_path)
    names = {c.name: c.status for c in report.checks}
    assert names["model IR"] == "fail" and names["tokenizer IR"] == "fail" and names["chat template"] == "fail"
    assert names["context length"] == "warn"
    assert "phi3ov download" in report.problems[0].hint


def test_a_turn_end_missing_from_the_stop_tokens_is_repaired(copy_of_bundled):
    # SmolLM2's template ends turns with <|im_end|>; a generation config that stops elsewhere runs on.
    (copy_of_bundled / "generation_config.json").write_text(json.dumps({"eos_token_id": 0}))
    report = doctor.diagnose(copy_of_bundled)
    stop = next(c for c in report.checks if c.name == "stop tokens")
    # The tokenizer IR's own eos is <|im_end|>, so OpenVINO GenAI still stops there: a warning at most.
    assert report.ok and stop.status == "ok" and 2 in report.stop_token_ids
    assert doctor.fix_stop_tokens(copy_of_bundled) == [2]
    assert json.loads((copy_of_bundled / "generation_config.json").read_text())["eos_token_id"] == [0, 2]


def _cut_weights_in_half(folder):
    bin_ = folder / "openvino_model.bin"
    data = bin_.read_bytes()  # through the link to the bundled file
    bin_.unlink()
    bin_.write_bytes(data[: len(data) // 2])


def _garbage_model_xml(folder):
    (folder / "openvino_model.xml").write_bytes(b"\x00garbage <net <<< not IR \xff\xfe")


def _garbage_tokenizer_xml(folder):
    (folder / "openvino_tokenizer.xml").write_text("this is not a tokenizer {")


def _remove_tokenizer(folder):
    for f in folder.glob("openvino_*tokenizer.*"):
        f.unlink()


@pytest.mark.parametrize("corrupt", [_cut_weights_in_half, _garbage_model_xml, _garbage_tokenizer_xml,
                                     _remove_tokenizer], ids=lambda f: f.__name__.strip("_"))
def test_serve_refuses_a_corrupt_folder_with_the_doctors_message(copy_of_bundled, corrupt):
    import subprocess
    import sys

    from phi3ov.process import free_port

    corrupt(copy_of_bundled)
    problem = doctor.diagnose(copy_of_bundled).problems[0]
    serve = subprocess.run([sys.executable, "-m", "phi3ov.cli", "serve", "--model", str(copy_of_bundled),
                            "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert serve.returncode != 0, "a corrupt folder must not be served"
    assert f"cannot be served: {problem.name}: {problem.detail}" in serve.stderr
    assert f"phi3ov doctor {copy_of_bundled.resolve()}" in serve.stderr
    assert "Traceback" not in serve.stderr and "Running on" not in serve.stdout
    checked = subprocess.run([sys.executable, "-m", "phi3ov.cli", "doctor", str(copy_of_bundled)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1 and problem.detail in checked.stdout  # the same finding, in full
