VENV ?= .venv
PY := $(VENV)/bin/python
export ATTUNE_DATABASE_URL ?= sqlite:///attune.db

.PHONY: help demo install test lint migrate revision load-packs load-pack worker beat serve bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

DEMO := ATTUNE_DATABASE_URL=sqlite:///attune.db ATTUNE_BROKER_URL=memory:// ATTUNE_PACKS_DIR=packs

demo: $(VENV)/.installed  ## the main job on the embedded default: SQLite, an in-process worker, three actions and a workflow
	$(DEMO) $(VENV)/bin/alembic upgrade head
	$(DEMO) $(VENV)/bin/attune packs load
	$(DEMO) $(VENV)/bin/attune run core.echo message="Hello from attune"
	$(DEMO) $(VENV)/bin/attune run examples.list_example count=3
	$(DEMO) $(VENV)/bin/attune run examples.text_stats text="the cat saw the other cat"
	$(DEMO) $(VENV)/bin/attune run examples.release version=1.0

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[dev]' && touch $@

install: $(VENV)/.installed  ## create the virtualenv and install attune with its dev tools

test: $(VENV)/.installed  ## run the whole test suite (PostgreSQL and Redis tests skip locally when absent)
	$(PY) -m pytest $(ARGS)

lint: $(VENV)/.installed  ## ruff check, ruff format --check, mypy --strict
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy --strict attune

migrate: $(VENV)/.installed  ## alembic upgrade head against ATTUNE_DATABASE_URL
	$(VENV)/bin/alembic upgrade head

revision: $(VENV)/.installed  ## new alembic revision from the models: make revision m="what changed"
	$(VENV)/bin/alembic revision --autogenerate -m "$(m)"

load-packs: migrate  ## load every pack of ATTUNE_PACKS_DIR (./packs) into the database
	$(VENV)/bin/attune packs load

load-pack: migrate  ## load one pack: make load-pack PACK=name
	$(VENV)/bin/attune packs load --pack-name "$(PACK)"

worker: $(VENV)/.installed  ## a Celery worker for ATTUNE_WORKER_RUNTIMES (set ATTUNE_BROKER_URL=redis://… or amqp://…)
	$(VENV)/bin/celery -A attune worker -l info

beat: $(VENV)/.installed  ## Celery beat: the stale-worker sweep every ATTUNE_SWEEP_INTERVAL_S (and retention)
	$(VENV)/bin/celery -A attune beat -l info

serve: $(VENV)/.installed  ## the HTTP API on 127.0.0.1:8000 (attune serve; on the embedded default with its worker)
	$(VENV)/bin/attune serve

bench: $(VENV)/.installed  ## benchmarks: attune beside its baselines, printing ratios
	@for script in tests/benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
