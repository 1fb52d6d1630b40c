# Two commands matter: `make run` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tablegate serve --demo

lint: $(STAMP)
	$(BIN)/ruff format --check gateway radio printers web tests bench scripts
	$(BIN)/ruff check gateway radio printers web tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/pip install --quiet -e '.[bluez]' || echo "note: python-dbusmock did not install; the BlueZ lane will skip"
	$(MAKE) lint
	$(MAKE) unit

bench: $(STAMP)
	bash scripts/system-deps.sh bench
	$(BIN)/python bench/orders.py
	$(BIN)/python bench/radio.py
	$(BIN)/python bench/printing.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
