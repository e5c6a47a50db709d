# Two set-up commands: `make demo` and `make test`. Each bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= demo_data
DEMO_OUTPUT ?= demo_output

.PHONY: demo test bench clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# demo: the default training settings (README "Presets": the batch size and learning rate follow the data
# size, 25 epochs, the ice emissivity starts at 0.9); ~1 minute on 2 CPU cores.
demo: $(STAMP)
	test -d $(DEMO_DATA)/truth || $(BIN)/seaice-twin --preset demo --output $(DEMO_DATA)
	$(BIN)/seaice-training --data $(DEMO_DATA) --output $(DEMO_OUTPUT) --tag demo --export --plots

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_OUTPUT)
