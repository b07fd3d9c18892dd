# Backprop from scratch — every target sets up what it needs and can be re-run.
#   make lab      create/update .venv and open the course in JupyterLab
#   make test     create/update .venv and run the whole test suite
#   make release  regenerate notebooks/ (learner versions) from solutions/ with nbgrader
#   make grade    autograde submitted/ in parallel, write feedback and grades.csv
#   make bench    run the benchmarks and write docs/benchmarks.md

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch. On this course's machines pip finds it locally; elsewhere, e.g.
#   make test TORCH_FLAGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC  ?= torch==2.13.0
TORCH_FLAGS ?=
PYTEST_ARGS ?=
GRADE_ARGS  ?=

.PHONY: env lab test release grade bench lint clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" $(TORCH_FLAGS)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev,grading]"
	@touch $(STAMP)

# JupyterLab refuses to run as root (containers, CI) unless told it may.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

lab: env
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS) index.ipynb

test: env
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

release: env
	$(BIN)/python scripts/release.py

grade: env
	$(BIN)/python scripts/grade.py $(GRADE_ARGS)

bench: env
	$(BIN)/python benchmarks/run_all.py

lint: env
	$(BIN)/ruff check checks tests scripts benchmarks

clean:
	rm -rf $(VENV) .nbgrader autograded feedback test-artifacts grades.csv grading_report.csv
