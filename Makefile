# `make run` and `make test` each create .venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch is small; set TORCH= to let pip choose (e.g. a CUDA build) instead.
TORCH  ?= torch==2.13.0

.PHONY: run test demo bench load clean-venv

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || { test -z "$(TORCH)" || $(PY) -m pip install -q "$(TORCH)"; }
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed          ## serve the workbench on the committed demo family
	$(PY) -m workbench $(ARGS)

test: $(VENV)/.installed         ## the offline test suite
	$(PY) -m pytest -q $(ARGS)

demo: $(VENV)/.installed         ## rebuild the demo family (corpus, base, full, LoRA, reward, PPO, pairs, ORPO) from configs/recipes/
	$(PY) -m trainers.build_demo $(ARGS)

# CPU=avx2 measures as an AVX2-only CPU would (no AVX512, no native bf16) by capping every kernel library.
AVX2_ENV := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2
CPU_ENV   = $(if $(filter avx2,$(CPU)),$(AVX2_ENV))

bench: $(VENV)/.installed        ## speed and memory benchmarks at FLAN-T5-base scale (CPU=avx2: as an AVX2-only CPU)
	$(CPU_ENV) $(PY) -m benchmarks $(ARGS)

load: $(VENV)/.installed         ## 20 concurrent users, 2 min, demo family: unbatched server, then batched (CPU=avx2 too)
	$(CPU_ENV) $(PY) -m benchmarks.load $(ARGS)

clean-venv:
	rm -rf $(VENV)
