# The two set-up commands of README.md: `make run` and `make test`.
# Each creates .venv if needed and installs torch's CPU wheel *before* the project,
# otherwise pip would pull several GB of CUDA wheels.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.prefixgate-installed

.PHONY: run test lint venv clean soak

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

run: venv
	$(BIN)/prefixgate serve

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# 60 s at 3x the measured capacity with the tiny model (bench/soak.py; figures in bench/RESULTS.md).
soak: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m bench.soak --seconds 60

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
