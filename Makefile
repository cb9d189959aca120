# Two commands matter: `make run` (the whole thing, embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Tests run against real PostgreSQL and Redis; override these to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tollhouse
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# Chart.js, pinned by package-lock.json, served from static/vendor/ (not committed).
static/vendor/chart.umd.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p static/vendor
	cp node_modules/chart.js/dist/chart.umd.min.js $@

install: $(VENV)/.installed static/vendor/chart.umd.min.js

run: install
	$(PY) manage.py migrate --no-input -v 0
	PORT=$(PORT) $(PY) manage.py demo
	exec $(PY) manage.py serve --host 127.0.0.1 --port $(PORT)

test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	TOLLHOUSE_SECRET_KEY=$${TOLLHOUSE_SECRET_KEY:-test-secret-key-not-for-production-0123456789} \
	TOLLHOUSE_ENCRYPTION_KEY=$${TOLLHOUSE_ENCRYPTION_KEY:-dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyEhISE=} \
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
