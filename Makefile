# The commands README promises. Each creates the environment it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: run test lint bench token check clean browser tfcheck-schema

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

## make tfcheck-schema: rebuild the provider schemas of the offline terraform validate/plan (tests/deploy/tfcheck/README.md)
tfcheck-schema: $(STAMP)
	@$(BIN)/python -m pip download -q --disable-pip-version-check --no-deps -d .cache/tfcheck cdktn-provider-google==20.3.1 cdktn-provider-random==15.0.1
	@$(BIN)/python tests/deploy/tfcheck/extract_schema.py .cache/tfcheck/cdktn_provider_google-20.3.1-py3-none-any.whl tests/deploy/tfcheck/schemas/google-7.46.1.json $$(cat tests/deploy/tfcheck/types.txt)
	@$(BIN)/python tests/deploy/tfcheck/extract_schema.py .cache/tfcheck/cdktn_provider_random-15.0.1-py3-none-any.whl tests/deploy/tfcheck/schemas/random-3.9.1.json random_password

clean:
	rm -rf $(VENV) .venv-checkov .venv-tfcheck .local .pytest_cache .mypy_cache .ruff_cache
