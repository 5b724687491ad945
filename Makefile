# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when it is
# missing and installs what it needs: the CPU build of torch first (an unpinned torch would
# pull a multi-GB CUDA build), then rftkit itself with its dev extras, pinned by constraints.txt.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.rftkit-installed
PYTEST_ARGS ?=

.PHONY: demo test test-all install clean gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	@touch $@

demo: $(STAMP)
	$(BIN)/rftkit demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The default suite skips tests marked slow; this runs everything.
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

# For a GPU machine without PyPI: the wheels it lacks, into .whl/ (`bash .ci/gpu` there installs them).
gpu-wheels: $(STAMP)
	$(BIN)/python .ci/gpu-wheels

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis build src/*.egg-info
