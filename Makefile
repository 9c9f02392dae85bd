# The two commands of the README: `make run` and `make test`. Both work on a fresh machine
# with only Python 3.11: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run demo-live test install install-dev migrate lint typecheck schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

# The server and the alerts worker (evaluation, silence timers, deliveries) together: Ctrl-C
# stops both, and the worker stops too when the server exits on its own.
run: migrate
	$(BIN)/python manage.py demo --base-url http://$(HOST):$(PORT)
	@echo "Serving on http://$(HOST):$(PORT)/ with Daphne, the alerts worker beside it (Ctrl-C to stop)"
	@$(BIN)/python manage.py worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' INT TERM EXIT; \
	$(BIN)/daphne -b $(HOST) -p $(PORT) ackly.asgi:application; \
	status=$$?; kill $$worker 2>/dev/null; wait $$worker; exit $$status

# A few demo requests a minute through the real APIs, for `make run` in another terminal.
demo-live: install
	$(BIN)/python manage.py demo --live --base-url http://$(HOST):$(PORT)

# The suite's own process keeps a small PostgreSQL pool too (its servers get theirs from
# tests/servers.py): with everything it starts, it stays well under max_connections.
test: install-dev
	DB_POOL_MAX=$${DB_POOL_MAX:-8} $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .

# mypy with django-stubs and the DRF stubs ([tool.mypy] in pyproject.toml); CI fails on any error.
typecheck: install-dev
	$(BIN)/mypy ackly ingest sources billing workspaces alerts stats

# Regenerates the committed copy of the OpenAPI document (tests compare the two).
schema: install
	$(BIN)/python manage.py spectacular --file docs/openapi/v1.yaml --validate --fail-on-warn

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache

# The ingest benchmark (bench/README.md): needs PostgreSQL and Redis on 127.0.0.1; it makes and
# drops its own database (ackly_bench) and uses Redis DB 7. Options: make bench BENCH_ARGS="...".
.PHONY: bench
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $(VENV)/.installed $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The soak (docs/reliability.md): 10 minutes of steady mixed load on bench.run's server recipe,
# then memory-growth and exact count checks. It makes and drops its own database (ackly_soak)
# and uses Redis DB 13. Options: make soak SOAK_ARGS="--duration 120 --rate 30".
.PHONY: soak
soak: $(VENV)/.installed-bench
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# PNGs of the main pages at 1280×800 and 390×844 (light, and dark for some) in screenshots/
# (not committed): a Daphne process on a fresh SQLite demo database fed over the real APIs.
.PHONY: screenshots
screenshots: install-dev
	$(BIN)/python -m tests.dashboard.screenshots screenshots
