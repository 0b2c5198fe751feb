# mirkit: every target installs what it needs first (uv, then the locked environment).
# PRESET picks the corpus and its config: configs/$(PRESET).toml (tiny, demo or large).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= demo
CONFIG := configs/$(PRESET).toml
DATA := data/$(PRESET)
SHARDS := shards/$(PRESET)
RUN := runs/$(PRESET)
# the multimodal run starts from an id-only run and trains only the content part
# (docs/design.md, "The multimodal recipe"); the id-only run is also its baseline
RUN_IDS := runs/$(PRESET)-ids
IDS_EPOCHS := --epochs 20 --early-stopping 5
# large: an epoch is 2,000,000 plays over 20,000 tracks (about 5 minutes of full softmax
# on 2 cores), so four epochs keep the whole chain within an hour (BENCHMARKS.md, "Scale")
ifeq ($(PRESET),large)
IDS_EPOCHS := --epochs 4
endif
IDS_OPTIONS := --modalities id --lr 0.003 --max-steps-per-epoch 0 $(IDS_EPOCHS)
# `make recommend USER=user_000232`; the USER of the environment (your login) is ignored
DEFAULT_LISTENER := $(if $(filter tiny,$(PRESET)),user_000001,user_000232)
LISTENER := $(if $(filter command line,$(origin USER)),$(USER),$(DEFAULT_LISTENER))
TIMED := tools/timed.sh runs/$(PRESET)-stages.tsv

.PHONY: setup test lint data shards train index eval recommend serve demo bench clean-data \
	ids-options

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
	$(TIMED) corpus $(BIN)/mirkit --config $(CONFIG) synth

$(DATA)/oracle.json: $(DATA)/truth.json | setup
	$(BIN)/python tools/synth_oracle.py $(DATA) --json $@ >/dev/null

shards: $(SHARDS)/manifest.json

$(SHARDS)/manifest.json: $(DATA)/truth.json | setup
	$(TIMED) shards $(BIN)/mirkit --config $(CONFIG) shards build

clean-data:
	rm -rf data/tiny data/demo data/large shards/tiny shards/demo shards/large

train: $(RUN)/model/model.pt

$(RUN_IDS)/model/model.pt: $(SHARDS)/manifest.json | setup
	$(TIMED) train-ids $(BIN)/mirkit --config $(CONFIG) train --run $(RUN_IDS) $(IDS_OPTIONS)

$(RUN)/model/model.pt: $(RUN_IDS)/model/model.pt | setup
	$(TIMED) train $(BIN)/mirkit --config $(CONFIG) train --init-from $(RUN_IDS) --freeze user_tower

index: $(RUN)/index.h5

$(RUN)/index.h5: $(RUN)/model/model.pt | setup
	$(TIMED) index $(BIN)/mirkit index --run $(RUN)

$(RUN_IDS)/index.h5: $(RUN_IDS)/model/model.pt | setup
	$(BIN)/mirkit index --run $(RUN_IDS)

eval: $(RUN)/eval-test.json

$(RUN)/eval-test.json: $(RUN)/index.h5 $(RUN_IDS)/index.h5 | setup
	$(TIMED) eval $(BIN)/mirkit eval --run $(RUN) --baseline $(RUN_IDS)

recommend: $(RUN)/index.h5 | setup
	$(BIN)/mirkit recommend $(LISTENER) --run $(RUN)

# the page and API at http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)
PORT ?= 8000
serve: $(RUN)/index.h5 | setup
	$(BIN)/mirkit serve --run $(RUN) --audio-dir $(DATA)/audio --port $(PORT)

# The whole job on the demo corpus, offline; re-running reuses what is already built.
demo: $(RUN)/eval-test.json $(DATA)/oracle.json | setup
	$(BIN)/mirkit recommend $(LISTENER) --run $(RUN)
	$(BIN)/python tools/demo_summary.py --preset $(PRESET)

# the id-only stage's options for $(PRESET) (tools/bench_scale.py runs the same recipe)
ids-options:
	@echo $(IDS_OPTIONS)

# Every benchmark, and BENCHMARKS.md's generated sections rewritten (not part of `test`).
# BENCH="--scale --seqrec" adds the long ones (the `large` world and the 20 M probe: about 1.5 hours).
bench: $(SHARDS)/manifest.json | setup
	$(BIN)/python tools/bench_all.py --preset $(PRESET) $(BENCH)
