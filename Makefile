# The workbook's commands. `make report` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
JOBS ?= 1
ARGS ?=

.PHONY: setup report test lint browser clean-venv bench data

## setup: create .venv with everything installed (skipped in seconds when pyproject.toml is unchanged)
setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	$(PY) -m pip install -q --no-deps torchrec==1.8.0 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	@rm -f $(VENV)/.installed-* && touch $@
	@echo "set-up done: $(VENV)"

## report: execute every notebook (default profile) and render reports/ (ARGS="--force", JOBS=2, ...)
report: setup
	$(PY) -m repro run --profile default --jobs $(JOBS) $(ARGS)
	$(PY) -m repro scorecard

## test: lint, unit tests, every notebook under nbval in the smoke profile
test: setup browser
	PY=$(PY) bash scripts/test.sh

## lint: ruff on lib/, tests/ and notebooks/
lint: setup
	$(VENV)/bin/ruff check lib tests notebooks

## browser: headless Chromium for the report tests (Debian's package; tests skip where it cannot be had)
browser:
	@bash scripts/ensure-chromium.sh

clean-venv:
	rm -rf $(VENV)

## bench: every benchmark against its baseline (reports/bench/*.json); QUICK=1 for the short versions
bench: setup
	$(PY) -m repro bench gpt $(if $(QUICK),--quick,)
	$(PY) -m repro bench picasso $(if $(QUICK),--quick,)
	$(PY) -m repro bench runs $(if $(QUICK),--quick,)
	$(PY) -m repro bench moe $(if $(QUICK),--quick,)
	$(PY) -m repro bench ddk $(if $(QUICK),--quick,)
	$(PY) -m repro bench victor $(if $(QUICK),--quick,)

## data: build the corpora and notebook 06's videos (full and smoke) and check them against data/manifest.json
data: setup
	$(PY) -m repro data build --all
