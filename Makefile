# Set-up and the two everyday commands: `make serve` and `make test`.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: serve test test-sqlite test-postgres test-slow scenario bench lint

$(BIN)/keelway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	touch $@

# Install everything, write ./keelway.yaml if missing and serve the local models.
serve: $(BIN)/keelway
	test -f keelway.yaml || $(BIN)/keelway init
	$(BIN)/keelway serve

# The whole suite, once with the store on SQLite and once on PostgreSQL.
test: test-sqlite test-postgres

test-sqlite: $(BIN)/keelway
	$(BIN)/python -m pytest

test-postgres: $(BIN)/keelway
	KEELWAY_TEST_DB=postgresql $(BIN)/python -m pytest

# Long checks left out of `make test`, such as retraining the injection
# classifier from its shipped set and comparing it with the shipped weights.
test-slow: $(BIN)/keelway
	$(BIN)/python -m pytest -m slow

# Gate a prompt change on the golden set with the local model, offline.
scenario: $(BIN)/keelway
	bash examples/python-reference/scenario.sh

bench: $(BIN)/keelway
	$(BIN)/python bench/gateway_overhead.py

lint: $(BIN)/keelway
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
