"""`make peers` keeps a llama.cpp build that runs here: its probe and its fallback, without building llama.cpp.

The probe is run against real child processes (one that dies of SIGILL as ggml's AMX kernel does on some
Intel Xeons, one that exits with an error); the build is replaced by a recorder, since a real one takes
~9 minutes.
"""

import signal
import sys

import pytest

from phi3ov.bench.llamacpp_probe import CMAKE_ARGS, choose, probe
from phi3ov.bench.peers import llamacpp_engine, peers_build


def fake_python(tmp_path, body: str):
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_probe_names_the_signal_a_crashed_child_died_of(tmp_path):
    assert probe(fake_python(tmp_path, "kill -ILL $$"), tmp_path / "m.gguf") == "SIGILL"


def test_probe_passes_a_child_that_generates_and_reports_one_that_fails(tmp_path):
    assert probe(sys.executable, tmp_path / "m.gguf").startswith("exit 1: ModuleNotFoundError")  # no llama_cpp here
    assert probe(fake_python(tmp_path, "echo \"'five'\""), tmp_path / "m.gguf") is None


def recorder(failures: list):
    builds, probes = [], iter(failures)
    return builds, (lambda kind, fresh: builds.append((kind, fresh))), (lambda: next(probes))


def test_a_native_build_that_runs_is_kept():
    builds, build, probe_ = recorder([None])
    assert choose(build, probe_, no_amx=False)[0] == "native"
    assert builds == [("native", False)]


def test_a_native_build_that_crashes_is_rebuilt_without_amx_and_not_from_the_cache():
    builds, build, probe_ = recorder([signal.Signals.SIGILL.name, None])
    kind, why = choose(build, probe_, no_amx=False)
    assert (kind, why) == ("native-no-amx", "AMX path crashed here (SIGILL): built without AMX")
    assert builds == [("native", False), ("native-no-amx", True)]
    assert "-mno-amx-tile" in CMAKE_ARGS[kind] and "-DGGML_NATIVE=ON" in CMAKE_ARGS[kind]


def test_the_knob_skips_the_amx_build_and_a_build_that_never_runs_fails_loudly():
    builds, build, probe_ = recorder([None])
    assert choose(build, probe_, no_amx=True) == ("native-no-amx", "PHI3OV_PEERS_NO_AMX=1: built without AMX")
    assert builds == [("native-no-amx", True)]
    builds, build, probe_ = recorder(["SIGILL", "SIGSEGV"])
    with pytest.raises(SystemExit, match="SIGSEGV"):  # fails `make peers`
        choose(build, probe_, no_amx=False)


def test_the_benchmark_names_the_build_beside_llama_cpp(tmp_path):
    python = tmp_path / "bin" / "python"
    assert llamacpp_engine(python) == "llama.cpp"
    assert "make peers" in peers_build(python)[1]
    (tmp_path / "BUILD").write_text("native-no-amx: AMX path crashed here (SIGILL): built without AMX\n")
    assert llamacpp_engine(python) == "llama.cpp (native-no-amx)"
    assert peers_build(python) == ("native-no-amx", "AMX path crashed here (SIGILL): built without AMX")
