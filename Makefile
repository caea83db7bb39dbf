# The commands README promises. Each creates the environment it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: run test lint bench token check clean browser

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

## make run: the whole gateway on http://127.0.0.1:$(PORT) (embedded Postgres, stand-ins)
run: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m gateway run --port $(PORT)

## make test: linters, type checks and the whole test suite
test: $(STAMP) browser lint
	@$(BIN)/python -m pytest

## make browser: Debian's chromium for the console's browser tests (tests/console); apt-get as root, else say how
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the console's browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: run 'sudo apt-get install -y chromium' (the browser tests fail without it under CI=true)"; \
	    if [ "$$CI" = true ]; then exit 1; fi; \
	  fi; }

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy common functions gateway gatewayctl
	@$(BIN)/lint-imports --no-cache

## make bench: the benchmark (direct vs gateway), see docs/performance.md
## (PEER=/path/to/claude adds Anthropic's gateway; FETCH_PEER=1 npm-packs it into .cache/claude-code/)
bench: $(STAMP)
	@$(BIN)/python -m bench $(if $(PEER),--peer $(PEER),) $(if $(FETCH_PEER),--fetch-peer,)

## make token EMAIL=dev@example.com GROUPS=eng,ml: a session token for the local configuration
token: $(STAMP)
	@$(BIN)/python -m gateway token --email "$(or $(EMAIL),dev@example.com)" --groups "$(GROUPS)"

## make check CONFIG=path: validate a gateway.yaml
check: $(STAMP)
	@$(BIN)/python -m gateway check $(CONFIG)

clean:
	rm -rf $(VENV) .venv-checkov .local .pytest_cache .mypy_cache .ruff_cache
