# The README's two commands are `make demo` and `make test`. Both install what is
# missing first (scripts/setup.sh, as root).
SHELL := /bin/bash
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := frame_parse pipeline table_ops ctl_decode topology_ops
# cargo-fuzz needs unstable rustc flags; the stable toolchain accepts them this way.
FUZZ_ENV := RUSTC_BOOTSTRAP=1

.PHONY: setup demo test unit fuzz bench lint

setup:
	./scripts/setup.sh

## The main job.
demo: setup
	cargo run --release --quiet -- demo

## Every test: unit, simulation, doc tests, then a brief run of each fuzz target.
test: setup unit fuzz

unit:
	cargo test --all-targets
	# The daemon and dataplane root tests again with 1- and 4-queue parents (2 above).
	for q in 1 4; do UMACVLAN_TEST_PARENT_QUEUES=$$q cargo test --test daemon --test dataplane || exit 1; done
	cargo test --doc
	cargo run --quiet --example embedded
	cargo run --quiet -- demo

fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do mkdir -p corpus/$$t; \
	  $(FUZZ_ENV) cargo fuzz run -s none -a $$t corpus/$$t $$(test -d seeds/$$t && echo seeds/$$t) -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

## Criterion micro-benchmarks, then the throughput benchmark against the kernel's
## macvlan, a Docker-style bridge, Open vSwitch AF_XDP and a raw AF_XDP forwarder
## (BENCHMARKS.md; about 20 minutes; results in target/bench/).
bench: setup
	cargo bench --no-default-features --bench main -- --warm-up-time 1 --measurement-time 2
	cargo run --release --quiet -- bench run --out target/bench

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
