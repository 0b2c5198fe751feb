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
RUN := runs/$(PRESET)
# `make recommend USER=user_000232`; the USER of the environment (your login) is ignored
LISTENER := $(if $(filter command line,$(origin USER)),$(USER),user_000232)

.PHONY: setup test lint data shards train index recommend demo clean-data

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

$(RUN)/model/model.pt: $(SHARDS)/manifest.json | setup
	$(BIN)/mirkit --config $(CONFIG) train

index: $(RUN)/index.h5

$(RUN)/index.h5: $(RUN)/model/model.pt | setup
	$(BIN)/mirkit index --run $(RUN)

recommend: $(RUN)/index.h5 | setup
	$(BIN)/mirkit recommend $(LISTENER) --run $(RUN)

# The whole job on the demo corpus, offline; re-running reuses what is already built.
demo: $(RUN)/index.h5 | setup
	$(BIN)/mirkit recommend $(LISTENER) --run $(RUN)
	@echo "demo: corpus $(DATA), shards $(SHARDS), run $(RUN) (metrics.jsonl, curves.png, index.h5)"
