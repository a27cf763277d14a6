# Sportello developer commands (GNU make). From the README:
#   make run    start RabbitMQ if needed, then every service, the gateway and the sandbox twins
#   make test   lint, type-check, then the whole test suite in one pytest run

VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)

IS_PY311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))
STAMP := $(VENV)/.installed
ENSURE := scripts/ensure-services.sh
PYTEST := $(VENV)/bin/python -m pytest --junitxml=test-artifacts/junit.xml

.PHONY: test run lint types unit conformance integration e2e deploy clean

test: lint types $(STAMP)
	$(ENSURE) rabbitmq postgresql xmlsec1
	$(PYTEST) tests/unit tests/conformance tests/integration tests/e2e tests/deploy

run: $(STAMP)
	$(ENSURE) rabbitmq
	exec $(VENV)/bin/python -m sportello.devserver

# Re-installs when the dependencies change.
$(STAMP): pyproject.toml requirements.lock
	@if [ ! -x $(VENV)/bin/python ]; then \
		$(PYTHON) -c '$(IS_PY311)' 2>/dev/null || { echo "Sportello needs Python 3.11: install it or run make PYTHON=/path/to/python3.11" >&2; exit 1; }; \
		echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); \
	fi
	@$(VENV)/bin/python -c '$(IS_PY311)' || { echo "$(VENV) is not Python 3.11: remove it, or pick another with VENV=" >&2; exit 1; }
	$(VENV)/bin/pip install -c requirements.lock -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

types: $(STAMP)
	$(VENV)/bin/mypy sportello services gateway sandbox

unit: $(STAMP)
	$(PYTEST) tests/unit

conformance: $(STAMP)
	$(ENSURE) xmlsec1
	$(PYTEST) tests/conformance

integration: $(STAMP)
	$(ENSURE) rabbitmq postgresql
	$(PYTEST) tests/integration

e2e: $(STAMP)
	$(ENSURE) rabbitmq postgresql xmlsec1
	$(PYTEST) tests/e2e

# Dockerfile (hadolint), compose, Kubernetes manifests, publiccode.yml, metrics and the CLI
deploy: $(STAMP)
	$(ENSURE) rabbitmq
	$(PYTEST) tests/deploy

clean:
	rm -rf var .run test-artifacts .pytest_cache .mypy_cache .ruff_cache
	find sportello services gateway sandbox tests -name __pycache__ -type d -prune -exec rm -rf {} +
