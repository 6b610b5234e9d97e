# medic — the README's two commands are `make demo` and `make test`.
GO        ?= go
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILDUSER ?= $(shell id -un 2>/dev/null || echo unknown)@$(shell hostname 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VPKG      := github.com/prometheus/common/version
LDFLAGS   := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) \
             -X $(VPKG).Branch=$(BRANCH) -X $(VPKG).BuildUser=$(BUILDUSER) \
             -X $(VPKG).BuildDate=$(BUILDDATE)
BIN       := bin/medic
# A count, not a duration: with a -fuzztime duration, go1.26's fuzz
# coordinator can fail a clean run with "context deadline exceeded" at the
# deadline (golang/go#75804, fixed in go1.27). ~5,000 execs/s here.
FUZZTIME  ?= 60000x
# make test's watchdog: each package's binary panics with its stack after
# PKG_TIMEOUT; the whole run fails, naming what still runs, after
# TEST_DEADLINE or when a process of it stays SIGSTOPped for TEST_STOPPED.
PKG_TIMEOUT   ?= 8m
TEST_DEADLINE ?= 25m
TEST_STOPPED  ?= 60s

.PHONY: all deps build test unit fuzz-short fuzz bench demo lint vet fmt-check rules-test clean chaos

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/medic

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every test, e2e included, after installing what is missing.
test: deps build vet fmt-check
	@mkdir -p bin
	$(GO) run ./internal/testguard -deadline $(TEST_DEADLINE) -stopped $(TEST_STOPPED) -summary bin/test-summary -- \
		-count=1 -timeout $(PKG_TIMEOUT) $(PKGS)
	$(MAKE) fuzz-short
	$(MAKE) rules-test
	$(MAKE) runbook-tests
	@echo "make test: every package, the fuzz run and the rule tests passed"
	@cat bin/test-summary

# The runbook tests (medic test) of the library and of the demo estate,
# whose files are templates: its test renders them first.
.PHONY: runbook-tests
runbook-tests: build
	$(BIN) test runbooks/library
	$(GO) test -count=1 -run '^TestDemoEstateRunbookTests$$' ./cmd/medic

rules-test:
	@if [ -d deploy/prometheus ]; then promtool check rules deploy/prometheus/*-rules.yml && promtool test rules deploy/prometheus/tests/*.yml; fi

fuzz-short:
	timeout --signal=QUIT --kill-after=30s 8m $(GO) test -timeout 7m ./hcl -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME)

fuzz:
	$(MAKE) fuzz-short FUZZTIME=1000000x

bench: deps build
	@scripts/bench.sh

# The chaos test of issue 14 for longer than make test's minute of faults:
# SIGKILLs of medic node, medic bridge and Redis under 200 alerts a minute
# (CHAOS_ALERTS to change), then every accepted alert traced to its end.
# The whole report goes to bin/chaos-report.txt; CHAOS_SEED replays a run.
CHAOS_DURATION ?= 10m
CHAOS_ALERTS   ?=
CHAOS_SEED     ?=
chaos: deps build
	@mkdir -p bin
	MEDIC_CHAOS_DURATION=$(CHAOS_DURATION) MEDIC_CHAOS_ALERTS=$(CHAOS_ALERTS) MEDIC_CHAOS_SEED=$(CHAOS_SEED) \
	MEDIC_CHAOS_REPORT=$(CURDIR)/bin/chaos-report.txt \
		$(GO) test -count=1 -timeout 60m -v -run '^TestChaosNoSilentLoss$$' ./e2e

demo: build
	$(BIN) demo

clean:
	rm -rf bin
