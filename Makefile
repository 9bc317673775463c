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

# The suite in two passes: every test but those marked `serial`, in TEST_WORKERS processes
# (pytest-xdist; each test has its own databases, key prefixes, ports and temp dirs; a
# module's tests stay in one process, in order, sharing its module fixtures; the longest
# modules first: --no-loadscope-reorder keeps the order tests/conftest.py gives), then
# the `serial` ones alone (fault tests that stop PostgreSQL under load, outbox readers, a
# latency bound). TEST_WORKERS=0: one process. The exit status is the first failure's;
# "no test" (5) of one pass is not one.
TEST_WORKERS ?= 3
test: install-test
	@a=0; b=0; \
	$(BIN)/python -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) \
	  -m "not serial" $(PYTEST_ARGS) || a=$$?; \
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS) || b=$$?; \
	if [ $$a -eq 5 ] && [ $$b -eq 5 ]; then exit 5; fi; \
	if [ $$a -ne 0 ] && [ $$a -ne 5 ]; then exit $$a; fi; \
	if [ $$b -ne 0 ] && [ $$b -ne 5 ]; then exit $$b; fi

# mypy over src/homefeed, configured in pyproject.toml ([tool.mypy]).
typecheck: install-test
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-data .pytest_cache .hypothesis
