# Thin wrapper around meson. `make run` and `make test` are all a newcomer needs;
# both install missing Debian packages first (as root, see scripts/deps.sh).

MESON ?= meson
BUILD := build

# Kept in variables: a literal comma would split $(call) arguments.
ASAN_OPTS := -Db_sanitize=address,undefined -Db_lundef=false -Ddebug_checks=2
FAULT_OPTS := -Dfault_injection=true
BENCH_OPTS := -Dbench=true
FUZZ_OPTS := -Dfuzz=true -Db_lundef=false

# `make fuzz`: seconds each fuzz target runs (the CI's meson tests run 30 s).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := rpc segment

# Configure a build dir only once: after that `meson compile` re-runs
# meson by itself whenever a meson.build changes.
# $(call setup,DIR,OPTIONS)
setup = test -f $(1)/build.ninja || $(MESON) setup $(1) $(2)

# $(call meson_test,DIR): build everything first (meson test alone rebuilds
# only what tests link, not e.g. the man pages the install test installs).
meson_test = $(MESON) compile -C $(1) && $(MESON) test -C $(1) --print-errorlogs --num-processes 2

.PHONY: all deps build run demo test asan fault bench bench-smoke fuzz-setup fuzz fuzz-ci soak clean help

all: build

deps:
	@scripts/deps.sh

build: deps
	@$(call setup,$(BUILD))
	$(MESON) compile -C $(BUILD)

# The daemon in the foreground with its built-in defaults; its first lines
# name the socket and the segment.  Ctrl-C stops it and keeps the segment.
run: build
	@echo "shmpoold in the foreground: Ctrl-C stops it (the segment stays for the next start)"
	./$(BUILD)/daemon/shmpoold

# The demo creates a segment and exercises every allocator from two processes.
demo: build
	./$(BUILD)/tests/shmpool-demo

test: build
	$(call meson_test,$(BUILD))

# AddressSanitizer + UndefinedBehaviorSanitizer, with the expensive validators on.
asan: deps
	@$(call setup,build-asan,$(ASAN_OPTS))
	$(call meson_test,build-asan)

# Crash points compiled in; tests pick them with SHMPOOL_CRASH_POINT.
fault: deps
	@$(call setup,build-fault,$(FAULT_OPTS))
	$(call meson_test,build-fault)

# The benchmark (tests/bench, issue 5): every allocator, medians of 5 runs,
# one table printed and written into docs/PERFORMANCE.md (takes minutes).
bench: deps
	@$(call setup,build-bench,$(BENCH_OPTS))
	$(MESON) compile -C build-bench
	python3 tests/bench/bench.py --build build-bench --output docs/PERFORMANCE.md

# The benchmark's quick mode as a meson test (suite bench): checks only that
# every program runs and prints well-formed results, never how fast.
bench-smoke: deps
	@$(call setup,build-bench,$(BENCH_OPTS))
	$(MESON) test -C build-bench --suite bench --print-errorlogs

# libFuzzer targets (tests/fuzz), built with clang in build-fuzz/.  Each runs
# FUZZ_SECONDS from the seed corpus; what it finds lands in
# build-fuzz/tests/fuzz/run-<target>/ (new inputs in corpus/, crashes in
# artifacts/).  `make fuzz-ci` runs them as meson tests (suite fuzz, 30 s each).
fuzz-setup: deps
	@test -f build-fuzz/build.ninja || CC=clang $(MESON) setup build-fuzz $(FUZZ_OPTS)
	$(MESON) compile -C build-fuzz $(addprefix tests/fuzz/fuzz-,$(FUZZ_TARGETS))

fuzz: fuzz-setup
	@for t in $(FUZZ_TARGETS); do \
		FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzz.sh build-fuzz/tests/fuzz/fuzz-$$t \
			tests/fuzz/corpus/$$t build-fuzz/tests/fuzz/run-$$t $(FUZZ_SECONDS) || exit 1; \
	done

fuzz-ci: fuzz-setup
	$(MESON) test -C build-fuzz --suite fuzz --no-rebuild --print-errorlogs --num-processes 2

# The long versions of the reliability tests (tests/reliability): 100 daemon
# restarts, 1,000 concurrent clients, longer churn, 5,000 client kills.  The short versions run
# in `make test`.
soak: build
	SHMPOOL_SOAK=1 $(MESON) test -C $(BUILD) --suite reliability --print-errorlogs \
		--num-processes 1 --timeout-multiplier 20

clean:
	rm -rf build build-asan build-fault build-bench build-fuzz

help:
	@echo "make run    build, then run the daemon shmpoold in the foreground (default socket and segment)"
	@echo "make demo   build, then run the two-process demo of the core (build/tests/shmpool-demo)"
	@echo "make test   build, then run the test suite"
	@echo "make build  install missing packages, configure build/ once, compile"
	@echo "make deps   install missing Debian packages (scripts/deps.sh)"
	@echo "make asan   tests under AddressSanitizer+UBSan in build-asan/ (debug_checks=2)"
	@echo "make fault  tests with fault injection compiled in, in build-fault/"
	@echo "make bench  build build-bench/ and run the full benchmark into docs/PERFORMANCE.md"
	@echo "make bench-smoke  the benchmark's quick mode as a meson test (suite bench)"
	@echo "make fuzz   libFuzzer targets (clang) in build-fuzz/, FUZZ_SECONDS=60 each"
	@echo "make fuzz-ci the fuzz targets as meson tests (suite fuzz, 30 s each)"
	@echo "make soak   the long reliability tests: 100 daemon restarts, 1,000 clients, 5,000 kills"
	@echo "make clean  remove all build directories"
