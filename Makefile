# kafkasend: build, generate, test.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

ROOT := $(abspath .)
BIN := $(ROOT)/bin
export PATH := $(BIN):$(PATH)
export GOTOOLCHAIN ?= local

CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.1
HELM_VERSION ?= v3.22.0
GOLANGCI_LINT_VERSION ?= v2.15.0
K8S_VERSION ?= v1.37.2

CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE := $(BIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM := $(BIN)/helm-$(HELM_VERSION)
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# The build's version (hack/version.sh: the chart's appVersion at its release
# tag, else <appVersion>-dev.<revision>) and source revision, linked into
# every binary and image.
VERSION ?= $(shell hack/version.sh)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X kafkasend.io/kafkasend/internal/version.Version=$(VERSION) -X kafkasend.io/kafkasend/internal/version.Revision=$(REVISION)

IMG ?= kafkasend/operator:$(VERSION)
WORKER_IMG ?= kafkasend/portal:$(VERSION)

.PHONY: all
all: build

##@ Development

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests (and the chart's copies of the CRD and alert rules).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:maxDescLen=512 paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	hack/chart-files.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail when generated files are not up to date.
	hack/verify-generated.sh

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet and gofmt check.
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (.golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: build
build: ## Build the manager, portal and kafkasend binaries into bin/, stamped with VERSION and REVISION.
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/manager ./cmd/manager
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/portal ./cmd/portal
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/kafkasend ./cmd/kafkasend

.PHONY: version
version: ## Print the version the build stamps into binaries and images.
	@echo $(VERSION)

CONTAINER_TOOL ?= docker

.PHONY: docker-build
docker-build: ## Build the operator image IMG and the worker image WORKER_IMG, stamped with VERSION and REVISION.
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --target operator -t $(IMG) .
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --target portal -t $(WORKER_IMG) .

##@ Test

.PHONY: test
test: $(CONTROLLER_GEN) ## Everything: generated files, vet, unit, envtest and real-Kafka tests.
	hack/test.sh

.PHONY: test-rules
test-rules: ## promtool check and unit-test the alert rules (config/prometheus).
	promtool check rules config/prometheus/rules.yaml
	promtool test rules config/prometheus/rules_test.yaml

.PHONY: test-unit
test-unit: ## Unit tests only (embedded Kafka, no control plane).
	go test -count=1 -race $$(go list ./... | grep -v -e /test/ -e /controllers)

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd for envtest (cached in bin/k8s).
	K8S_VERSION=$(K8S_VERSION) hack/envtest-assets.sh

.PHONY: kafka-start kafka-stop
kafka-start: ## Start the local Apache Kafka broker (prints its address).
	hack/kafka.sh start
kafka-stop: ## Stop the local Apache Kafka broker.
	hack/kafka.sh stop

##@ Fuzzing and chaos

# package:target pairs; seed corpora in each package's testdata/fuzz/.
FUZZ_TARGETS ?= \
	./pkg/wire:FuzzParseChunk ./pkg/wire:FuzzDecodeRequest ./pkg/wire:FuzzDecodeResponse ./pkg/wire:FuzzPeekRouting \
	./internal/portal/assembler:FuzzAssemblerSequences ./internal/portal/offsets:FuzzDecodeCommit \
	./internal/portal/upstream:FuzzPathPolicy ./internal/portal/upstream:FuzzHeaderPolicy
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s; make test runs 2000 inputs of each).
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t ($(FUZZTIME))"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

CHAOS_FLAGS ?=

.PHONY: chaos
chaos: ## Kill and restart portal processes and the broker under load; fails on any lost or wrong answer (figures in docs/reliability.md).
	go build -o $(BIN)/portal ./cmd/portal
	B=$$(hack/kafka.sh start); trap 'hack/kafka.sh stop' EXIT; \
	KAFKASEND_TEST_BROKERS=$$B KAFKASEND_REQUIRE_REAL_KAFKA=1 KAFKASEND_CHAOS=1 KAFKASEND_CHAOS_PORTAL_BIN=$(BIN)/portal \
	KAFKASEND_CHAOS_REPORT=$(BIN)/chaos/report.txt go test -count=1 -timeout 20m -v -run TestChaos ./test/chaos/ $(CHAOS_FLAGS)

.PHONY: images
images: ## Build the operator, portal and pause images as OCI archives in bin/images (no container engine).
	hack/images.sh

.PHONY: e2e
e2e: $(HELM) ## End to end on a real single-node cluster: helm install, worker pods, Apache Kafka (root; hack/README.md).
	HELM=$(HELM) hack/e2e.sh

##@ Benchmarks

BENCH_SCENARIOS ?= mixed concurrency throughput overhead large rebalance
BENCH_FLAGS ?=

.PHONY: bench
bench: ## Run the bench scenarios against a local Apache Kafka (started here, stopped on exit); results in bin/bench/.
	go build -o $(BIN)/portal ./cmd/portal
	go build -o $(BIN)/kafkasend ./cmd/kafkasend
	mkdir -p $(BIN)/bench
	B=$$(hack/kafka.sh start); trap 'hack/kafka.sh stop' EXIT; \
	for s in $(BENCH_SCENARIOS); do \
		$(BIN)/kafkasend bench --scenario $$s --brokers $$B --portal-bin $(BIN)/portal --json \
			--svg $(BIN)/bench/$$s.svg $(BENCH_FLAGS) | tee $(BIN)/bench/$$s.txt; \
	done

##@ Demo

.PHONY: demo
demo: ## The main job end to end on an embedded Kafka (no cluster, no broker).
	go run ./cmd/kafkasend demo

##@ Deploy

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRD into the current kubectl context.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: build-installer
build-installer: manifests $(KUSTOMIZE) ## Write dist/install.yaml: CRD, RBAC and the operator running IMG, deploying WORKER_IMG.
	mkdir -p dist
	KUSTOMIZE=$(KUSTOMIZE) hack/build-installer.sh "$(IMG)" "$(WORKER_IMG)" > dist/install.yaml
	@echo "dist/install.yaml: operator $(IMG), workers $(WORKER_IMG)"

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator (IMG) and its worker image (WORKER_IMG) into the current kubectl context.
	KUSTOMIZE=$(KUSTOMIZE) hack/build-installer.sh "$(IMG)" "$(WORKER_IMG)" | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN)/.tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.tmp/controller-gen $@

$(KUSTOMIZE):
	GOBIN=$(BIN)/.tmp go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(BIN)/.tmp/kustomize $@

$(HELM):
	GOBIN=$(BIN)/.tmp go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.tmp/helm $@

$(GOLANGCI_LINT):
	GOBIN=$(BIN)/.tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.tmp/golangci-lint $@

.PHONY: tools
tools: $(CONTROLLER_GEN) $(KUSTOMIZE) $(HELM) $(GOLANGCI_LINT) ## Install build tools into bin/.
