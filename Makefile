# mirkit: every target installs what it needs first (uv, then the locked environment).
# PRESET picks the corpus and its config: configs/$(PRESET).toml (demo or tiny).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= demo
CONFIG := configs/$(PRESET).toml
DATA := data/$(PRESET)
SHARDS := shards/$(PRESET)

.PHONY: setup test lint data shards train demo clean-data

setup: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

data: $(DATA)/truth.json

$(DATA)/truth.json: | setup
	$(BIN)/mirkit --config $(CONFIG) synth

shards: $(SHARDS)/manifest.json

$(SHARDS)/manifest.json: $(DATA)/truth.json | setup
	$(BIN)/mirkit --config $(CONFIG) shards build

clean-data:
	rm -rf data/tiny data/demo data/large shards/tiny shards/demo

train: $(SHARDS)/manifest.json | setup
	$(BIN)/mirkit --config $(CONFIG) train

# The whole job on the demo corpus, offline; re-running reuses what is already built.
demo: $(SHARDS)/manifest.json | setup
	@test -f runs/$(PRESET)/model/model.json || $(BIN)/mirkit --config $(CONFIG) train
	@echo "demo: corpus $(DATA), shards $(SHARDS), run runs/$(PRESET) (metrics.jsonl, curves.png)"
