# One command each, on a fresh machine: `make test`, `make repro`, `make repro-offline`.
# Each creates (or reuses) the virtual environment .venv first, pinned by requirements.lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUFF_PATHS := depthcore stages tests benchmarks

.PHONY: test lint repro repro-offline bench lock

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
# at ~30 s per image), a narrow adapter and a few epochs. Like every `dvc exp run -S`, this writes the
# values into params.yaml; `git checkout params.yaml` returns to the defaults.
OFFLINE_PARAMS := -S data.source=synthetic -S data.synthetic.images=24 -S clip.pretrained=none \
	-S sam.pretrained=none -S segments.method=felzenszwalb -S train.epochs=5 -S train.batch_size=4 \
	-S train.lr=0.003 -S adapters.msa.decoder_channels=64 -S adapters.msa.rgb_channels=8
repro-offline: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc exp run $(OFFLINE_PARAMS)
	@echo "metrics: metrics/*.json (dvc metrics show); figures: plots/zeroshot.png, plots/eval.png;"
	@echo "training curves: plots/train_curves.csv (dvc plots show); model: models/model.safetensors"

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
