# callminer-assets: the two commands are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
START  ?= 2025-01-01
END    ?= 2025-06-30
# 150 ms is a remote SaaS round trip; at 40 ms a sequential client already gets 23 req/s,
# so no client can be more than 50 / 23 = 2.2x faster under a 50 req/s limit.
BENCH_LATENCY_MS ?= 150
# Peak RSS of a 7-day and a 31-day headless run at this many interactions a day.
BENCH_MEMORY_PER_DAY ?= 1000
REPORTS_DIR ?= data/reports
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: help run test dev bench bench-warehouse webhook sandbox report screenshot lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python 3.11 on PATH (python3.11 or python3), or make PYTHON=..."; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

run: $(STAMP) $(DAGSTER_HOME)/dagster.yaml ## materialise everything on the sandbox (START=... END=...)
	$(BIN)/python -m callminer_assets run --start $(START) --end $(END)

test: $(STAMP) ## run the whole test suite
	$(BIN)/python -m pytest -n 2 -q -m "not serial"
	@# Rate tests measure the busiest second at the server: alone, not beside another worker.
	$(BIN)/python -m pytest -q -m serial

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml ## open the Dagster UI (sensors on) at http://127.0.0.1:3000
	$(BIN)/dagster dev -m callminer_assets.definitions

bench: $(STAMP) bench-warehouse ## benchmarks: warehouse, REST extraction, Bulk Export, peak RSS of 7- vs 31-day runs
	$(BIN)/python benchmarks/extract.py --latency-ms $(BENCH_LATENCY_MS)
	$(BIN)/python benchmarks/bulk.py
	$(BIN)/python benchmarks/memory.py --per-day $(BENCH_MEMORY_PER_DAY)

bench-warehouse: $(STAMP) ## one day's replace on a 365-day lake vs a 10-day one, upkeep
	$(BIN)/python benchmarks/warehouse.py

webhook: $(STAMP) ## the real-time events listener on :8787 (needs CALLMINER_WEBHOOK_SECRET)
	$(BIN)/python -m callminer_assets.webhook --port 8787

sandbox: $(STAMP) ## the sandbox as a real HTTP server on :8700
	$(BIN)/python -m callminer_assets.sandbox --port 8700

# The newest REPORTS_DIR/YYYY-MM.html (file names sort by month).
LATEST_REPORT = $(lastword $(sort $(wildcard $(REPORTS_DIR)/????-??.html)))

report: ## print the latest monthly report's path (and open it on a desktop)
	@test -n "$(LATEST_REPORT)" || { echo "no report under $(REPORTS_DIR) yet: run \`make run\`"; exit 1; }
	@echo "$(abspath $(LATEST_REPORT))"
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] && command -v xdg-open >/dev/null; then xdg-open "$(LATEST_REPORT)" >/dev/null 2>&1 & fi

screenshot: $(STAMP) ## docs/report.png from the latest report, via headless Chromium
	@test -n "$(LATEST_REPORT)" || { echo "no report under $(REPORTS_DIR) yet: run \`make run\`"; exit 1; }
	$(BIN)/python -m callminer_assets.analytics.browser $(LATEST_REPORT) --screenshot docs/report.png --width 1100 --scale 0.7 --max-height 6000

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff format --check callminer_assets tests benchmarks
	$(BIN)/ruff check callminer_assets tests benchmarks
	$(BIN)/mypy callminer_assets

fmt: $(STAMP)
	$(BIN)/ruff format callminer_assets tests benchmarks
	$(BIN)/ruff check --fix callminer_assets tests benchmarks

clean: ## remove the venv, the warehouse (lake + catalog) and the local Dagster home
	rm -rf $(VENV) $(DAGSTER_HOME) data/warehouse.sqlite* data/lake data/duckdb_extensions
