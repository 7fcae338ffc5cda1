# dirvol: a CSI driver that provisions directories on a node's disk.
# Run `make help` for the targets.

BIN        := bin/dirvol
PKG        := ./cmd/driver
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X main.version=$(VERSION)
# Empty: the reference deploy/base/kustomization.yaml gives the driver's image.
IMAGE      ?=
IMAGE_TOOL := cd test/e2e && go run ./cmd/dirvol-image -root ../..
GOLANGCI_LINT_VERSION := v2.15.0

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-13s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/dirvol.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) $(PKG)

.PHONY: run
run: build ## Build and run the driver on a socket and data dir under RUN_DIR (default: a fresh temp dir).
	@dir="$${RUN_DIR:-$$(mktemp -d /tmp/dirvol.XXXXXX)}"; \
	echo "dirvol: endpoint unix://$$dir/csi.sock, data dir $$dir/data (Ctrl-C stops)"; \
	exec $(BIN) --endpoint "unix://$$dir/csi.sock" --data-dir "$$dir/data" --node-id "$$(hostname)" --v=2

.PHONY: test
test: ## Run every test (unit, sanity, crash, hostile input, each fuzz target for 5s, the cluster end-to-end tests of `make e2e`, then the conformance plan `ci`) with -race; needs root.
	go test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz FUZZTIME=5s
	$(MAKE) e2e
	$(MAKE) conformance CONFORMANCE=ci

# FUZZTIME is how long `make fuzz` runs each fuzz target.
FUZZTIME ?= 10s

.PHONY: fuzz
fuzz: ## Run every Go fuzz target of the root module (found with `go test -list '^Fuzz'`) for FUZZTIME each (default 10s).
	@set -e; \
	list=$$(go test -list '^Fuzz' ./...) || { echo "$$list"; exit 1; }; \
	set -- $$(echo "$$list" | awk '/^Fuzz/ { t[n++] = $$1; next } /^ok/ { for (i = 0; i < n; i++) print $$2, t[i]; n = 0 }'); \
	test $$# -gt 0 || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	start=$$(date +%s); count=0; \
	while [ $$# -gt 0 ]; do \
		echo "fuzz: $$2 in $$1 for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$2\$$" -fuzztime $(FUZZTIME) "$$1"; \
		count=$$((count + 1)); shift 2; \
	done; \
	echo "fuzz: $$count targets in $$(( $$(date +%s) - start ))s"

STRESS_DURATION ?= 60s

.PHONY: test-stress
test-stress: ## Churn create/snapshot/restore/delete on btrfs and image pools for STRESS_DURATION (default 60s) each, then check limits hold; prints figures. Needs root.
	DIRVOL_STRESS_DURATION=$(STRESS_DURATION) go test -race -count=1 -v -run Churn -timeout 30m ./test/stress/

.PHONY: sanity
sanity: ## Run the csi-test sanity suite in-process.
	go test -race -count=1 -v ./test/sanity/

.PHONY: sanity-binary
sanity-binary: build ## Run the csi-sanity command-line binary against bin/dirvol.
	./hack/sanity-binary.sh

.PHONY: bench
bench: ## Print figures: volume create/delete at 0, 1k, 10k volumes (dir pool on TMPDIR's filesystem, dir and btrfs pools on a btrfs image); snapshot/restore of 1 GiB per backend; driver start time and memory at 0, 10k. Needs root for the images; ~20 min.
	@tmp="$${TMPDIR:-/tmp}"; echo "bench: temp dir $$tmp is on $$(stat -f -c %T "$$tmp")"
	go test -run '^$$' -bench . -benchtime 200x -timeout 30m ./pkg/volume/
	go test -run '^$$' -bench Snapshot -benchtime 3x -timeout 30m ./pkg/pool/
	go test -run '^$$' -bench View -timeout 30m ./pkg/pool/
	go test -run '^$$' -bench . -benchtime 3x -timeout 30m ./test/bench/

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint.
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt: files above need formatting"; exit 1)
	go vet ./...
	go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

.PHONY: image
image: ## Build bin/dirvol-image.tar, the image deploy/ runs, without a container engine (Debian packages of test/e2e/dirvolimage/debian-packages.lock + the static binary; reproducible); loads it into docker or podman when one runs.
	$(IMAGE_TOOL) -version '$(VERSION)' -out bin/dirvol-image.tar $(if $(IMAGE),-image '$(IMAGE)')

.PHONY: image-lock
image-lock: ## Resolve the image's Debian packages again with this host's apt (Debian) and rewrite their lock.
	$(IMAGE_TOOL) -resolve

.PHONY: image-docker
image-docker: ## Build the same image from the Dockerfile with docker.
	docker build --build-arg VERSION=$(VERSION) -t "$(if $(IMAGE),$(IMAGE),$$($(IMAGE_TOOL) -print-reference))" .

# --- Cluster end-to-end tests (test/e2e, a Go module of its own) -------------
# Without E2E_KUBECONFIG they build etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl and the CSI sidecars from the Go module proxy
# (once: cached in ${DIRVOL_E2E_CACHE:-~/.cache/dirvol-e2e}; a cold build takes
# ~30 min on 2 cores) and start a local control plane, in a network namespace of
# their own, with kubelet-less nodes and one real node (containerd, runc, CNI
# plugins, kubelet) running deploy/ from the image `make image` builds. The real
# node uses /var/lib/kubelet and /var/lib/dirvol, which must be absent or empty.
# As non-root the tests skip, so the build is skipped too. See test/e2e/README.md.
E2E_TIMEOUT ?= 60m
E2E_PREBUILD = if [ -z "$$E2E_KUBECONFIG" ] && [ "$$(id -u)" = 0 ]; then (cd test/e2e && go run ./cmd/e2e-binaries >/dev/null); fi

.PHONY: e2e
e2e: ## Cluster end-to-end tests: local control plane (root), or the cluster of E2E_KUBECONFIG.
	@$(E2E_PREBUILD)
	cd test/e2e && go test -race -count=1 -timeout $(E2E_TIMEOUT) ./...

# BENCH_CLAIMS: claim counts bench-e2e runs, comma-separated (100,1000 adds
# the 1,000-claim rounds, ~15 min more on 2 cores). -v: the request tables
# are longer than the ten lines go test keeps of a benchmark's log.
BENCH_CLAIMS ?= 100

.PHONY: bench-e2e
bench-e2e: ## Print figures: BENCH_CLAIMS (default 100) PVCs with pods to all Bound and to all deleted on 1-node and 2-node local clusters, API requests per claim by client, the floor Kubernetes' controllers set.
	@$(E2E_PREBUILD)
	cd test/e2e && DIRVOL_BENCH_CLAIMS=$(BENCH_CLAIMS) go test -v -run '^$$' -bench . -benchtime 1x -timeout $(E2E_TIMEOUT) ./bench/
# The Kubernetes external storage suite (upstream's specs at v1.37.2) against
# dirvol: on the local cluster's real node (root; containerd, kubelet and
# deploy/base's DaemonSet in a network namespace), or on E2E_KUBECONFIG's
# cluster. CONFORMANCE=full runs every spec test/e2e/conformance/testdriver-dir.yaml
# enables; CONFORMANCE=ci the subset CI runs. JUnit reports and the suite's
# output go to bin/conformance. See test/e2e/README.md.
CONFORMANCE ?= full
CONFORMANCE_TIMEOUT ?= 120m

.PHONY: conformance
conformance: ## Kubernetes external storage suite against dirvol (real node as root, or E2E_KUBECONFIG); CONFORMANCE=full|ci; reports in bin/conformance.
	cd test/e2e/build/kubernetes && go test -trimpath -count=1 ./suitecheck
	@if [ -z "$$E2E_KUBECONFIG" ] && [ "$$(id -u)" = 0 ]; then (cd test/e2e && go run ./cmd/e2e-binaries -conformance >/dev/null); fi
	cd test/e2e && E2E_CONFORMANCE=$(CONFORMANCE) go test -race -count=1 -v -timeout $(CONFORMANCE_TIMEOUT) ./conformance
# --- end of cluster end-to-end tests -----------------------------------------

.PHONY: clean
clean: ## Remove build output; while a kind cluster of `make kind-up` exists, its kubeconfig (bin/kind) and kind (bin/tools) stay.
	@if [ -f bin/kind/kubeconfig ]; then \
		find bin -mindepth 1 -maxdepth 1 ! -name kind ! -name tools -exec rm -rf {} +; \
		echo "clean: kept bin/kind and bin/tools: bin/kind/kubeconfig is the kubeconfig of a kind cluster (make kind-down deletes the cluster, then make clean removes them)"; \
	else \
		rm -rf bin; \
	fi

# kind: a local cluster running deploy/ with an image built from this tree (needs Docker).
.PHONY: kind-up
kind-up: ## Create a kind cluster (NODES=3 for three), build and load the image, install the snapshot controller and dirvol.
	./hack/kind.sh up

.PHONY: kind-down
kind-down: ## Delete the kind cluster.
	./hack/kind.sh down

.PHONY: e2e-kind
e2e-kind: ## Run the end-to-end tests against the kind cluster of kind-up.
	./hack/kind.sh e2e -v
