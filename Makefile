# One command each, on a fresh machine: `make test`, `make repro`, `make repro-offline`.
# Each creates (or reuses) the virtual environment .venv first, pinned by requirements.lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUFF_PATHS := depthcore stages tests benchmarks paper

.PHONY: test test-slow lint pipeline repro repro-offline paper paper-collect paper-grid results bench lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# The suite in two tiers, each over every core (pytest-xdist): `make test` (unit and integration tests, and the
# recorded learning benchmark checked against its thresholds and the current code) and `make test-slow` (the DVC
# pipelines end to end in temporary clones of one shared offline run, and seed 0 of the offline demo trained live).
# CI runs both. `make bench` re-runs every benchmark, benchmarks/learning.py (the seeds) among them.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m "not slow"

# The slow tier's tests carry an xdist_group, two of about equal length (docs/testing.md), so that two cores finish
# together.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadgroup -m slow

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_PATHS)
	$(BIN)/ruff format --check $(RUFF_PATHS)

# dvc.yaml is generated from the stage specs (depthcore/pipeline/spec.py): every stage's code dependencies are
# the files its script runs. Regenerate after changing a stage or an import; a test checks it is current.
pipeline: $(STAMP)
	$(BIN)/python -m depthcore.pipeline write

# After DVC, stale unfinished work (a .partial store or training state whose output DVC restored from its
# run-cache) is removed; unfinished work of stages that are not up to date is kept and listed.
repro: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m depthcore.pipeline partials --remove

# The whole pipeline with no network, on a 2-core CPU in a few minutes: rendered rooms, seeded random CLIP/SAM
# weights, the cheap felzenszwalb segmenter and a short training of the published MSA at narrow widths; the
# settings are depthcore/config/offline.py's DEMO (`python -m depthcore.config.offline` prints them). Like every
# `dvc exp run -S`, this writes the values into params.yaml; `git checkout params.yaml` restores them.
repro-offline: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc exp run $$($(BIN)/python -m depthcore.config.offline)
	@echo "metrics: metrics/*.json (dvc metrics show); figures: plots/zeroshot.png, plots/eval.png;"
	@echo "training curves: plots/train_curves.csv (dvc plots show); model: models/model.safetensors"

# The paper's tables: paper/dvc.yaml from paper/rows.yaml, then the grid of (row, seed) runs over the
# main pipeline's cached inputs. JOBS=N runs N trainings at once through DVC's experiment queue (one GPU
# each on a machine with several: CUDA_VISIBLE_DEVICES=0,1,... make paper JOBS=2).
# SHARD=k/N runs only the k-th of N disjoint parts of the runs (balanced by benchmarks/results/paper.json; part
# 1 also the cheap stages) and pushes them to the default DVC remote; paper-collect then pulls every part and
# writes the report, training nothing (SHARDS=N names a missing run's shard). paper/slurm.sh: one shard per task.
JOBS ?= 1
SHARD ?=
SHARDS ?=
paper: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python paper/grid.py run --jobs $(JOBS) $(if $(SHARD),--shard $(SHARD))

paper-collect: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python paper/grid.py collect $(if $(SHARDS),--shards $(SHARDS))

paper-grid: $(STAMP)
	$(BIN)/python paper/grid.py write

# The README's results section, from reports/paper.md (never typed by hand).
results: $(STAMP)
	$(BIN)/python paper/grid.py readme

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# Re-resolve the dependencies of pyproject.toml in a fresh environment and pin the result.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# The resolved environment of \`pip install -e '.[dev]'\` (Python 3.11), installed with -c by make."; \
	  echo "# Refresh with \`make lock\` after changing the dependencies in pyproject.toml."; \
	  .lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock
	rm -rf .lock-venv
