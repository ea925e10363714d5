# kropipe — the two commands a newcomer needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/kropipe/kropipe/internal/version.Version=$(VERSION)
# Packages with goroutines and locks run under the race detector in `make test`.
RACE_PKGS ?= ./internal/promote/... ./internal/render/... ./cmd/promoter/...
# The fault suite builds and kills the real promoter binary: it runs once, in `make faults`.
FAULTS_PKG := ./internal/promote/faults
NOT_FAULTS = $(shell $(GO) list $(1) | grep -v '/internal/promote/faults$$')
# Each fuzz target runs this long in `make fuzz` (a crasher lands in the package's
# testdata/fuzz and then fails `make unit` until fixed).
FUZZ_TIME ?= 5s
FUZZ_TARGETS := argocd:FuzzDerive config:FuzzParse webhook:FuzzParse gitwrite:FuzzTrailers yamledit:FuzzSet

.PHONY: all build demo test unit race vet fmt e2e bench generate clean faults fuzz

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The promoter's demo: registry and Git server on 127.0.0.1, promotions develop → staging,
# the rendered Deployment, a rollback. Needs only Go and git.
demo: build
	./$(BIN)/promoter demo

unit:
	$(GO) test -count=1 $(call NOT_FAULTS,./...)

vet:
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

race:
	$(GO) test -count=1 -race $(call NOT_FAULTS,$(RACE_PKGS))

# Crash points, random SIGKILLs, a concurrent git writer and a fault-injecting registry
# proxy against the real binary (bench/faults-long.sh runs a longer randomized run).
faults:
	$(GO) test -count=1 -timeout 15m $(FAULTS_PKG)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz $$fn in internal/promote/$$pkg for $(FUZZ_TIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZ_TIME) ./internal/promote/$$pkg; \
	done

e2e: build
	cd e2e && $(GO) test -count=1 -timeout 60m ./...

test: vet unit race faults fuzz e2e

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

generate:
	$(GO) generate ./...

clean:
	rm -rf $(BIN)
