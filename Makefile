# Two entry points, each doing all set-up on a fresh machine:
#   make demo   - the embedded demo (no broker needed)
#   make test   - lint, types and the whole test suite (fetches Kafka and Prometheus where it can)
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test check unit bench kafka-up kafka-down

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/stream-rca demo

check: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(BIN)/.installed
	bash deploy/kafka/kafka.sh fetch
	bash deploy/prometheus/install.sh
	bash deploy/chromium/install.sh
	$(MAKE) check
	$(BIN)/pytest

unit: $(BIN)/.installed
	$(BIN)/pytest -m "not integration"

# DoWhy-GCM (the reference) lives in its own venv: it pins versions of its own.
BENCH := .venv-bench/bin

$(BENCH)/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	$(BENCH)/pip install -q --upgrade pip
	$(BENCH)/pip install -q -e '.[dev,bench]'
	touch $@

bench: $(BENCH)/.installed
	$(BENCH)/python -m benchmarks.run

kafka-up: $(BIN)/.installed
	bash deploy/kafka/kafka.sh start

kafka-down:
	bash deploy/kafka/kafka.sh stop
