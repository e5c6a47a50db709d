# Two set-up commands: `make demo` and `make test`. Each bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DEMO_DATA ?= demo_data
DEMO_OUTPUT ?= demo_output

.PHONY: demo test lint bench clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# what running needs (make demo): the package, its dependencies (torch at the pinned version) and
# onnx for the ONNX file of --export
$(RUN_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[export]'
	touch $@

# what testing needs on top (make test): pytest, hypothesis, onnx, onnxruntime, smrt, ruff, mypy
$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[export,test]'
	touch $@

# the checks CI enforces, then the suite
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# the suite in TEST_WORKERS processes (pytest-xdist): two, CI's cores; each worker builds its own session
# fixtures (the trained twins of tests/e2e, tests/reliability), so more workers take more memory
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# demo: the default training settings (README "Presets": the batch size and learning rate follow the data
# size, 25 epochs, the ice emissivity starts at 0.9); ~1 minute on 2 CPU cores.
demo: $(RUN_STAMP)
	test -d $(DEMO_DATA)/truth || $(BIN)/seaice-twin --preset demo --output $(DEMO_DATA)
	$(BIN)/seaice-training --data $(DEMO_DATA) --output $(DEMO_OUTPUT) --tag demo --export --plots

bench: $(RUN_STAMP)
	$(BIN)/python benchmarks/train_throughput.py

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_OUTPUT)
