# Sportello developer commands (GNU make). From the README:
#   make run    start RabbitMQ if needed, then every service, the gateway and the sandbox twins
#   make test   lint, type-check, then the whole test suite in one pytest run

VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)

IS_PY311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))
STAMP := $(VENV)/.installed
ENSURE := scripts/ensure-services.sh
PYTEST := $(VENV)/bin/python -m pytest --junitxml=test-artifacts/junit.xml
# the citizen portal and the back-office console (web/): pinned npm packages, built into web/dist
WEB_STAMP := web/dist/.built
WEB_SOURCES := $(wildcard web/src/* web/portal/* web/console/*) web/package.json web/package-lock.json web/vite.config.js

.PHONY: test run web browser lint types unit conformance integration e2e deploy resilience clean bench-gateway bench-notices bench-login bench-appio bench-appio-resilience bench-city bench-events

test: lint types $(STAMP) $(WEB_STAMP)
	$(ENSURE) rabbitmq postgresql xmlsec1 chromium
	$(PYTEST) tests/unit tests/conformance tests/integration tests/e2e tests/deploy tests/browser tests/resilience

run: $(STAMP) $(WEB_STAMP)
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

# npm ci installs exactly web/package-lock.json; the build runs again whenever a source changes
web: $(WEB_STAMP)

$(WEB_STAMP): $(WEB_SOURCES)
	@command -v npm >/dev/null || { echo "the web pages need Node.js 20+ and npm: sudo apt-get install nodejs npm" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund && npm run build
	touch $@

# the portal and the console in headless Chromium (Debian's), against the running platform
browser: $(STAMP) $(WEB_STAMP)
	$(ENSURE) rabbitmq postgresql chromium
	$(PYTEST) tests/browser

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

# Benchmarks (commands, not tests; each writes its section of docs/benchmarks.md). wrk: apt-get install wrk
bench-gateway: $(STAMP)
	$(ENSURE) rabbitmq postgresql
	$(VENV)/bin/python -m bench.gateway

bench-events: $(STAMP)
	$(ENSURE) rabbitmq postgresql
	$(VENV)/bin/python -m bench.event_pipeline --events 3000

bench-notices: $(STAMP)
	$(VENV)/bin/python -m bench.notices

bench-login: $(STAMP)
	$(VENV)/bin/python -m bench.login

# App IO at IO's limit (150 / 5 s): a campaign against the minimum time; then 5,000 citizens with 20%
# faults, two replicas sharing the limit, one killed (tests/e2e/test_appio_resilience_smoke.py is its smoke)
bench-appio: $(STAMP)
	$(ENSURE) rabbitmq postgresql
	$(VENV)/bin/python -m bench.appio_campaign throughput --recipients 600

bench-appio-resilience: $(STAMP)
	$(ENSURE) rabbitmq postgresql
	$(VENV)/bin/python -m bench.appio_campaign resilience --recipients 5000

# The yearly TARI of Cremona end to end through the whole platform, limits on (~55 min: IO's 150 / 5 s
# for ~92,000 requests); BENCH_CITY_LIMITS=off|both for the platform's own ceiling
# (tests/e2e/test_city_campaign_smoke.py is its smoke)
BENCH_CITY_HOUSEHOLDS ?= 33000
BENCH_CITY_LIMITS ?= on
bench-city: $(STAMP)
	$(ENSURE) rabbitmq postgresql
	$(VENV)/bin/python -m bench.city_campaign --households $(BENCH_CITY_HOUSEHOLDS) --limits $(BENCH_CITY_LIMITS)

# Issue 8's resilience scenarios in full (the default run has a smoke of them): a campaign to
# RESILIENCE_RECIPIENTS citizens with kill -9 of each service and restarts of a private RabbitMQ and
# PostgreSQL; one to RESILIENCE_FAULTS_RECIPIENTS with 20% of the twins' answers broken (at IO's
# pace under injected 429s: ~5 minutes for 2,000); the gateway fuzzed from its OpenAPI. ~15 minutes.
RESILIENCE_RECIPIENTS ?= 10000
RESILIENCE_FAULTS_RECIPIENTS ?= 2000
RESILIENCE_FUZZ_EXAMPLES ?= 100
resilience: $(STAMP)
	$(ENSURE) rabbitmq postgresql xmlsec1
	RESILIENCE_FULL=1 RESILIENCE_RECIPIENTS=$(RESILIENCE_RECIPIENTS) RESILIENCE_FUZZ_EXAMPLES=$(RESILIENCE_FUZZ_EXAMPLES) \
		RESILIENCE_FAULTS_RECIPIENTS=$(RESILIENCE_FAULTS_RECIPIENTS) \
		$(VENV)/bin/python -m pytest --junitxml=test-artifacts/resilience.xml -s tests/resilience

clean:
	rm -rf var .run test-artifacts .pytest_cache .mypy_cache .ruff_cache web/dist
	find sportello services gateway sandbox tests -name __pycache__ -type d -prune -exec rm -rf {} +
