# The two quick-start commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo serve test typecheck install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

demo: install
	$(BIN)/homefeed demo

serve: install
	$(BIN)/homefeed serve

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy over src/homefeed, configured in pyproject.toml ([tool.mypy]).
typecheck: install-test
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-data .pytest_cache .hypothesis
