# Makefile — a thin front over CMake. See README.md.
#   make demo    install dependencies, build, run the demo
#   make demo-sync  the demo uploading to a local test core (tests/server)
#   make test    install dependencies, build (gcc, clang+ASan/UBSan+fuzz,
#                gcc+TSan) and run every test; ends with ctest's summary
#   make build   release build into build/
#   make bench   run every benchmark suite (JSON lines on stdout)
# Long soak and fault runs: TLCM_SOAK=1 make test.

.PHONY: all deps build demo demo-sync test bench clean

all: build

deps:
	@tools/install-deps

build: deps
	@tools/build build

# The learning loop on Fashion-MNIST (docs/evaluation.md) next to a local
# core (graphs/core.yaml): prints what reaches the core, the evaluation
# table, and what the core holds at the end (tools/demo --help).
demo: build
	tools/demo

# The same with store and forward (graphs/demo-sync.yaml): the device
# packages its drift events and metrics and uploads them to tests/server's
# tlcm-test-server on a free loopback port; prints what arrived there.
demo-sync: build
	tools/demo-sync

test: deps
	@tools/run-tests

bench: build
	@for s in $$(build/bin/tinylcm-bench --list | cut -d' ' -f1); do \
		build/bin/tinylcm-bench $$s; done

clean:
	rm -rf build build-asan build-tsan
