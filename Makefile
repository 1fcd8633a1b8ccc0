# xmppd: `make run` starts a server with the embedded default,
# `make test` builds and runs every test. Both install what they need.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/xmppd-target
ifneq ($(shell command -v sccache 2>/dev/null),)
export RUSTC_WRAPPER ?= sccache
endif

.PHONY: setup run test build fmt

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --workspace --all-targets

run: setup
	cargo run --bin xmppd -- serve

test: setup
	cargo test --workspace --all-targets
	XMPPD_BIN=$(CARGO_TARGET_DIR)/debug/xmppd XMPPD_CONFIG_CHECK=1 bash deploy/check.sh
# The federation tests' DNS server (node/tests/interop_s2s.rs runs the
# rest of tests/interop/s2s against Prosody and ejabberd with xmppd).
	python3 tests/interop/s2s/dns_test.py

fmt:
	cargo fmt --all
