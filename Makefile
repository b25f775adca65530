# Two commands matter: `make demo` and `make test`. Each sets up .venv first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-run

.PHONY: setup test demo lint format bench bench-smoke clean

setup: $(STAMP)

# dev = every extra (keras, train, s3) plus the test tools: demo and test get everything.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Two workers: most tests wait on a child process's start-up, so two share the cores well.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist worksteal --durations=10

demo: $(STAMP)
	BRINELITE_HOME=$(abspath $(DEMO_DIR))/cache bash scripts/demo.sh $(abspath $(DEMO_DIR)) $(VENV)/bin

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks.run

# Toy sizes into benchmarks/.data/smoke: the published results.json and page stay as they are.
bench-smoke: $(STAMP)
	$(PY) -m benchmarks.run --smoke --out benchmarks/.data/smoke

clean:
	rm -rf $(DEMO_DIR) build *.egg-info .pytest_cache
