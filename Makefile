# Two commands on a fresh clone: `make demo` runs the example pipeline, `make test` the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
# Debian's Chromium, for the browser test (Playwright drives it; it never downloads a browser).
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints-test.txt -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --silent
	touch $@

$(CHROMIUM):
	apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)

## Run the example pipeline (dags/compare_models) on the embedded default: local datastore, in-process Airflow.
demo: $(STAMP)
	AIRFLOW_HOME=$(CURDIR)/.demo/airflow $(PY) dags/compare_models/pipeline.py

## Lint, then the whole test suite: Azurite (npm) and a real Airflow on PostgreSQL are started by the tests.
test: $(STAMP) $(NODE_STAMP) $(CHROMIUM) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Benchmarks; results go to bench/RESULTS.md.
bench: $(STAMP) $(NODE_STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) node_modules .demo .bench .pytest_cache
