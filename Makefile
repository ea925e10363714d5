# kropipe — the two commands a newcomer needs are `make demo` and `make test`.
GO        ?= go
# The Go release every build, test and tool runs on: go.mod's toolchain line (go1.27.3, which fixes
# the standard-library vulnerabilities that go1.26.8 carries into the binaries). A machine starts on
# its own Go and ignores that line unless GOTOOLCHAIN names it, so the Makefile names it; the module
# proxy serves it on first use (~5 s). `make GOTOOLCHAIN=go1.26.8 vuln` shows the gate failing.
export GOTOOLCHAIN := $(shell sed -n 's/^toolchain //p' go.mod)
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/kropipe/kropipe/internal/version.Version=$(VERSION)
# Static analysis and the vulnerability check (both in make test) run pinned tools with `go run module@version`.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The Go vulnerability database, from its Go module (the machines reach no other server): the
# OSV files of this version, indexed into $(VULNDB_DIR) once.
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB_DIR     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kropipe/vulndb-$(VULNDB_VERSION)

# The fault suite builds and kills the real promoter binary: it runs once, in `make faults`.
FAULTS_PKG := ./internal/promote/faults
NOT_FAULTS = $(shell $(GO) list $(1) | grep -v '/internal/promote/faults$$')
# Each fuzz target runs this long in `make fuzz` (a crasher lands in the package's
# testdata/fuzz and then fails `make unit` until fixed).
FUZZ_TIME ?= 5s
FUZZ_TARGETS := argocd:FuzzDerive config:FuzzParse webhook:FuzzParse gitwrite:FuzzTrailers yamledit:FuzzSet

.PHONY: all build demo test unit race vet lint vuln fmt e2e bench generate clean faults fuzz charts

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The promoter's demo: registry and Git server on 127.0.0.1, promotions develop → staging,
# the rendered Deployment, a rollback. Needs only Go and git.
demo: build
	./$(BIN)/promoter demo

# The edit loop: every unit test, without the race detector.
unit: charts
	$(GO) test -count=1 $(call NOT_FAULTS,./...)

# The Helm chart (charts/kropipe) and the argo-cd chart values: helm lint and helm template
# through the Helm v4 library, compared with manifests/. A module of its own (charts/go.mod), on
# the product's module versions, so its first build compiles only what the product does not
# use: Helm itself and ~200 packages (Helm v4.3.2 on k8s.io v0.37 compiled ~720).
# The argo-cd values render through the official argo-cd chart in charts/testdata/argo-cd
# (KROPIPE_ARGO_CD_CHART=<argo-helm>/charts/argo-cd: through another copy).
charts:
	cd charts && $(GO) test -count=1 ./...

vet:
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	cd charts && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@# The image's binary (-tags nodemo, Dockerfile.promoter) carries none of the demo's servers.
	@if $(GO) list -deps -tags nodemo ./cmd/promoter | grep -E '/internal/promote/(gitserver|registrytest)$$|/pkg/registry$$'; then \
	  echo "the promoter built with -tags nodemo still links the demo's servers (above)"; exit 1; fi

lint:
	$(GO) run $(STATICCHECK) ./...
	cd charts && $(GO) run $(STATICCHECK) ./...

# A vulnerability the code reaches fails, in a module (bump it) or in the Go standard library
# (a toolchain upgrade: the gate names the Go release that fixes it), unless vuln-exceptions.yaml
# gives a written, dated reason for it (internal/tools/vulngate).
vuln: $(VULNDB_DIR)/index/db.json
	@mkdir -p $(BIN)
	$(GO) run $(GOVULNCHECK) -db file://$(VULNDB_DIR) -format json ./... > $(BIN)/govulncheck.json
	$(GO) run ./internal/tools/vulngate -exceptions vuln-exceptions.yaml < $(BIN)/govulncheck.json

$(VULNDB_DIR)/index/db.json:
	dir=$$(cd / && $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -d "$$dir/data/osv" && rm -rf $(VULNDB_DIR) && \
	  $(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$dir/data/osv" -out $(VULNDB_DIR)

# The unit tests once, under the race detector (make test runs them only here).
race:
	$(GO) test -count=1 -race $(call NOT_FAULTS,./...)

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

# e2e/promoter's controller tests mostly wait (soak times, Leases, polls), one after another on
# one stack: its longest ones run in two more test processes, each with a stack of its own, beside
# the rest of the suite (measured in make e2e, warm, the three at once on 2 cores: 142, 232 and
# 235 s, the target 4m19s; each process ~20 s of it for its stack). All run to the end; any failing
# fails the target. Gitea (e2e/stack StartGitea, built only for the tests that start one) adds
# ~6 min cold (its build, measured 5m58s wall-clock under load) and 1.1-1.6 s warm per start;
# e2e/forge's contract test ~13 s warm, in the first process. The pull-request test in the
# cluster (Gitea, two merges, two syncs: 55-56 s warm measured alone, Gitea's start included)
# runs in the third process, the shortest (its verification Job and Rollouts analysis tests, 61-75
# s and 47-54 s, make it the 142 s one): ~200 s expected there, still under the other two.
E2E_SECOND := ^(TestPromoterController_ReleaseGroupMovesAsOneSet|TestController_LeaderKilledAtSyncRequest_StandbySyncsThePromotionOnce|TestController_VerificationJobRunsInTheDestinationCluster)$$
E2E_THIRD  := ^(TestController_VerificationJobGatesTheStage|TestController_AnalysisGatesTheStage|TestController_PullRequestMergedThenOnlyItsApplicationSyncsTheMergeCommit)$$

e2e: build
	cd e2e && { \
	  $(GO) test -count=1 -timeout 60m -run '$(E2E_SECOND)' ./promoter & second=$$!; \
	  $(GO) test -count=1 -timeout 60m -run '$(E2E_THIRD)' ./promoter & third=$$!; \
	  $(GO) test -count=1 -timeout 60m -skip '$(E2E_SECOND)|$(E2E_THIRD)' ./...; first=$$?; \
	  wait $$second; second=$$?; wait $$third; third=$$?; exit $$((first || second || third)); }

# The whole suite runs every test: with CI set, a test needing a tool (Chromium for the pipeline
# page) fails when the tool is missing instead of skipping; `make unit` may skip it.
test: export CI := 1
test: vet lint vuln race charts faults fuzz e2e

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

generate:
	$(GO) generate ./...

clean:
	rm -rf $(BIN)
