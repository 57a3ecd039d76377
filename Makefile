# Agentry: `make run` serves the product, `make test` proves it.
# Both work on a fresh clone with no environment (SQLite, in-memory layers,
# the built-in offline model); see README.md for the settings.

PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV_PY := .venv/bin/python

# The development .env `make run` leaves for this checkout's manage.py commands.
ENV_FILE ?= .env

.PHONY: install install-runtime run test test-fast lint typecheck format migrations-check bench audit clean

UV_BOOTSTRAP = command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

# What serving needs: the runtime dependencies only. `--inexact` keeps the
# development tools of an earlier `make install`.
.venv/.installed-runtime: pyproject.toml uv.lock
	@$(UV_BOOTSTRAP)
	$(UV) sync --frozen --no-dev --inexact
	@touch $@

# With the development group: test, lint and audit tools.
.venv/.installed: pyproject.toml uv.lock
	@$(UV_BOOTSTRAP)
	$(UV) sync --frozen
	@touch $@ .venv/.installed-runtime

install-runtime: .venv/.installed-runtime

install: .venv/.installed

# Written once and kept, so the key (and browser sessions) survive restarts.
$(ENV_FILE):
	@printf '%s\n' "# Local development settings, written by make run; never deploy this file." \
	  "DEBUG=1" "SECRET_KEY=dev-$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" > $@
	@echo "Wrote $@ (DEBUG=1, a development SECRET_KEY): manage.py commands here read it."

run: install-runtime $(ENV_FILE)
	AGENTRY_ENV_FILE=$(abspath $(ENV_FILE)) DEBUG=1 $(VENV_PY) manage.py migrate --noinput
	AGENTRY_ENV_FILE=$(abspath $(ENV_FILE)) DEBUG=1 $(VENV_PY) manage.py seed_agents
	AGENTRY_ENV_FILE=$(abspath $(ENV_FILE)) DEBUG=1 .venv/bin/daphne -b $(HOST) -p $(PORT) config.asgi:application

# Browser tests run in a process of their own: Playwright's sync API keeps an
# event loop on the main thread, which async tests after it cannot share.
test: install lint
	$(VENV_PY) -m pytest -m "not browser"
	$(VENV_PY) -m pytest -m browser tests/browser; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ]

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The suite without the tests that spawn server processes or drive a browser.
test-fast: install
	$(VENV_PY) -m pytest -m "not browser and not slow"

lint: install node_modules/.installed
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	npx --no-install eslint static/chat
	AGENTRY_TESTING=1 $(VENV_PY) -m mypy

# mypy alone (`make lint` runs it too), strict on sessions_app, agents and
# tools (pyproject's [tool.mypy]);
# the settings module needs a key, which the testing flag provides.
typecheck: install
	AGENTRY_TESTING=1 $(VENV_PY) -m mypy

format: install
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

migrations-check: install
	$(VENV_PY) manage.py makemigrations --check --dry-run

# Security audit (docs/security.md): bandit over the shipped code fails on any
# medium or high finding; pip-audit checks the locked dependencies against
# PyPI's vulnerability data and fails on a known vulnerability, but only warns
# when that data cannot be reached (CI may reach the package index alone).
audit: install
	.venv/bin/bandit -q -r accounts agents config sessions_app tools -x '*/migrations/*' -ll -ii
	@req=$$(mktemp) out=$$(mktemp); \
	$(UV) export --frozen --no-hashes --no-emit-project --format requirements-txt > $$req; \
	if .venv/bin/pip-audit -r $$req --no-deps --disable-pip --vulnerability-service pypi \
	     --progress-spinner off > $$out 2>&1; then status=0; else status=$$?; fi; \
	grep -v "could not be audited" $$out; \
	if grep -q "known vulnerabilit" $$out && ! grep -q "No known vulnerabilities" $$out; then rm -f $$req $$out; exit 1; fi; \
	if [ $$status -ne 0 ]; then echo "pip-audit could not reach the vulnerability data: not audited (see docs/security.md)"; fi; \
	skipped=$$(grep -c "could not be audited" $$out || true); \
	if [ "$$skipped" -gt 0 ]; then echo "pip-audit: $$skipped package(s) not audited (no vulnerability data reachable)"; fi; \
	rm -f $$req $$out

bench: install
	$(VENV_PY) -m bench

clean:
	rm -rf .venv node_modules staticfiles .pytest_cache .ruff_cache
