# Abacus — the front door. `make help` lists every target.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN        := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
GO         ?= go
FUZZTIME   ?= 5s
TEST_FLAGS ?=
ABACUS_DATA_DIR ?= $(CURDIR)/.abacus

##@ Everyday

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

.PHONY: run
run: deps build ## Run the whole system (abacusd dev: private PostgreSQL, Redis and broker under .abacus/).
	ABACUS_DATA_DIR="$(ABACUS_DATA_DIR)" $(BIN)/abacusd dev

.PHONY: test
test: deps check-generate lint ## Vet, the race-enabled test suite and short fuzz runs (what CI runs).
	$(GO) test -race -count=1 -timeout 12m $(TEST_FLAGS) ./...
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

.PHONY: build
build: ## Build abacusd and abacus-loadgen into ./bin.
	$(GO) build -o $(BIN)/ ./cmd/...

BENCH_FLAGS ?=
ROLLUP_BENCH_FLAGS ?=

.PHONY: bench
bench: deps ## Benchmarks on this machine, as ratios to its own limits (see bench/README.md).
	$(GO) build -o $(BIN)/ ./cmd/abacusd ./cmd/abacus-loadgen
	$(GO) run ./bench/ingestbench --abacusd $(BIN)/abacusd --loadgen $(BIN)/abacus-loadgen --json-out $(BIN)/ingestbench.json $(BENCH_FLAGS)
	$(GO) run ./bench/rollupbench --abacusd $(BIN)/abacusd --loadgen $(BIN)/abacus-loadgen --json-out $(BIN)/rollupbench.json $(ROLLUP_BENCH_FLAGS)
	$(GO) test -run='^$$' -bench='Judge|Decode' -benchmem ./services/ingest

.PHONY: bench-go
bench-go: ## Every Go micro-benchmark (go test -bench ./...).
	$(GO) test -run='^$$' -bench=. -benchmem ./...

##@ Contract and code generation

.PHONY: generate
generate: tools proto-deps ## Regenerate gen/ from proto/ (offline, pinned plugins).
	rm -rf gen
	buf generate
	./scripts/gen-openapi-embed.sh gen/openapiv2

.PHONY: check-generate
check-generate: generate ## Fail when gen/ differs from what proto/ generates.
	@git diff --exit-code --stat -- gen || { echo "gen/ is out of date: run 'make generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo "gen/ has untracked or deleted files: run 'make generate' and commit" >&2; exit 1; }

.PHONY: lint
lint: tools proto-deps vet ## buf lint (STANDARD + COMMENTS), buf format check and go vet.
	buf lint
	buf format --diff --exit-code proto

.PHONY: breaking
breaking: tools proto-deps ## Check proto/ for breaking changes against main.
	buf breaking --against '.git#branch=main'

.PHONY: vet
vet: ## go vet every package.
	$(GO) vet ./...

##@ Setup (run by the targets above when needed)

.PHONY: deps
deps: ## Install PostgreSQL and redis-server from Debian when missing.
	./internal/devstack/install-deps.sh

.PHONY: tools
tools: ## Install the pinned tools of tools/go.mod (buf, protoc plugins, grpcurl) into ./bin.
	cd tools && GOBIN=$(BIN) $(GO) install tool

.PHONY: proto-deps
proto-deps: ## Copy imported protos from the Go module cache into .proto-deps/.
	./scripts/proto-deps.sh .proto-deps

.PHONY: clean
clean: ## Remove build output and the dev-mode data directory.
	rm -rf $(BIN) .proto-deps .abacus
