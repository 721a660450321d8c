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

demo: $(VENV)/.installed         ## rebuild the demo family (corpus, base, full, LoRA, reward, PPO) from configs/recipes/
	$(PY) -m trainers.build_demo $(ARGS)

bench: $(VENV)/.installed        ## speed and memory benchmarks at FLAN-T5-base scale
	$(PY) -m benchmarks $(ARGS)

load: $(VENV)/.installed         ## 20 concurrent gradio_client users for two minutes against the demo family
	$(PY) -m benchmarks.load $(ARGS)

clean-venv:
	rm -rf $(VENV)
