# kropipe — the two commands a newcomer needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/kropipe/kropipe/internal/version.Version=$(VERSION)
# Packages with goroutines and locks run under the race detector in `make test`.
RACE_PKGS ?= ./internal/promote/... ./internal/render/... ./cmd/promoter/...

.PHONY: all build demo test unit race vet fmt e2e bench generate clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The promoter's demo: registry and Git server on 127.0.0.1, promotions develop → staging,
# the rendered Deployment, a rollback. Needs only Go and git.
demo: build
	./$(BIN)/promoter demo

unit:
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

race:
	$(GO) test -count=1 -race $(RACE_PKGS)

e2e: build
	cd e2e && $(GO) test -count=1 -timeout 60m ./...

test: vet unit race e2e

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

generate:
	$(GO) generate ./...

clean:
	rm -rf $(BIN)
