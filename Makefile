# One command each, on a fresh machine: `make test`, `make repro`, `make repro-offline`.
# Each creates (or reuses) the virtual environment .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test repro repro-offline lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check depthcore stages tests benchmarks

repro: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

# The whole pipeline with no network: synthetic rooms and seeded random CLIP/SAM weights
# (SAM with 8x8 prompt points: random SAM finds no masks anyway, and 32x32 costs ~5 min/image on CPU).
OFFLINE_PARAMS := -S data.source=synthetic -S clip.pretrained=none -S sam.pretrained=none -S sam.points_per_side=8
repro-offline: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc exp run $(OFFLINE_PARAMS)

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done
