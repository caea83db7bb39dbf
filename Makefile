# The commands README promises. Each creates the environment it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: run test lint bench token check clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

## make run: the whole gateway on http://127.0.0.1:$(PORT) (embedded Postgres, stand-ins)
run: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m gateway run --port $(PORT)

## make test: linters, type checks and the whole test suite
test: $(STAMP) lint
	@$(BIN)/python -m pytest

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
