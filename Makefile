# One command each, on a fresh machine: `make test`, `make repro`, `make repro-offline`.
# Each creates (or reuses) the virtual environment .venv first, pinned by requirements.lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUFF_PATHS := depthcore stages tests benchmarks paper

.PHONY: test lint repro repro-offline paper paper-grid results bench lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_PATHS)
	$(BIN)/ruff format --check $(RUFF_PATHS)

repro: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

# The whole pipeline with no network, on a 2-core CPU in a few minutes: 24 synthetic rooms' images,
# seeded random CLIP/SAM weights, the cheap felzenszwalb segmenter (random-weight SAM finds no masks,
# at ~30 s per image), the published MSA at narrow widths and a short custom training. Like every
# `dvc exp run -S`, this writes the values into params.yaml; `git checkout params.yaml` restores them.
OFFLINE_PARAMS := -S data.source=synthetic -S data.synthetic.images=24 -S data.synthetic.views_per_room=2 \
	-S clip.pretrained=none -S sam.pretrained=none -S segments.method=felzenszwalb -S train.preset=custom \
	-S train.optimizer=sgd -S train.lr=0.05 -S train.epochs=5 -S train.batch_size=2 \
	-S 'adapters.msa.widths=[32,32,16,16,8,8]' -S ssl.pairs=dataset
repro-offline: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc exp run $(OFFLINE_PARAMS)
	@echo "metrics: metrics/*.json (dvc metrics show); figures: plots/zeroshot.png, plots/eval.png;"
	@echo "training curves: plots/train_curves.csv (dvc plots show); model: models/model.safetensors"

# The paper's tables: paper/dvc.yaml from paper/rows.yaml, then the grid of (row, seed) runs over the
# main pipeline's cached inputs. JOBS=N runs N trainings at once through DVC's experiment queue (one GPU
# each on a machine with several: CUDA_VISIBLE_DEVICES=0,1,... make paper JOBS=2).
JOBS ?= 1
paper: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python paper/grid.py run --jobs $(JOBS)

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
