# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
DEMO_CUSTOMERS ?= 3000

.PHONY: run test reliability bench lint demo refresh clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

## run: set up, build the demo store if absent, refresh, serve the dashboard on localhost:$(PORT)
run: $(VENV)/.run-deps
	$(BIN)/python -m analytics setup-demo --customers $(DEMO_CUSTOMERS)
	$(BIN)/streamlit run app.py --server.address localhost --server.port $(PORT) --server.headless true

## test: set up and run the test suite, on TEST_WORKERS worker processes (pytest-xdist; a file's
## tests stay together on one worker, so its module fixtures are built once)
TEST_WORKERS ?= 2
test: $(VENV)/.dev-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## reliability: the long checks: crash tests (SIGKILL of `python -m analytics refresh` at every pause point, on
## SQLite and, with CUSTOMER_STORE_TEST_PG_URL, PostgreSQL; a killed partition worker; churn scoring on a Dask
## LocalCluster of 2 worker processes), a full disk, concurrent readers on both, the load run (LOAD_SESSIONS=20
## sessions, 4 of them browsers and the rest websocket clients, for LOAD_SECONDS=300; figures in
## benchmarks/results.json under "load"); their fast cases
## also run in `make test`; and the screenshot review: every page of every role in English and Chinese at
## 1920x1080 and the KPI wall at 3840x2160, saved to screenshots/review/ (git-ignored) to be looked at
reliability: $(VENV)/.dev-deps
	$(BIN)/python -m pytest tests/reliability tests/analytics/test_churn_public.py tests/analytics/test_partitions.py -m "reliability_long or not reliability_long" -v
	$(BIN)/python -m pytest tests/browser/test_screens_all.py -m reliability_long -v

## bench: speed and memory benchmarks, written to benchmarks/results.json (not run by CI)
bench: $(VENV)/.dev-deps
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .

demo: $(VENV)/.run-deps
	$(BIN)/python -m analytics demo

refresh: $(VENV)/.run-deps
	$(BIN)/python -m analytics refresh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
