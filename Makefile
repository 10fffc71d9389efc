# Thin wrapper around meson. `make run` and `make test` are all a newcomer needs;
# both install missing Debian packages first (as root, see scripts/deps.sh).

MESON ?= meson
BUILD := build

# Kept in variables: a literal comma would split $(call) arguments.
ASAN_OPTS := -Db_sanitize=address,undefined -Db_lundef=false -Ddebug_checks=2
FAULT_OPTS := -Dfault_injection=true
BENCH_OPTS := -Dbench=true

# Configure a build dir only once: after that `meson compile` re-runs
# meson by itself whenever a meson.build changes.
# $(call setup,DIR,OPTIONS)
setup = test -f $(1)/build.ninja || $(MESON) setup $(1) $(2)

# $(call meson_test,DIR)
meson_test = $(MESON) test -C $(1) --print-errorlogs --num-processes 2

.PHONY: all deps build run demo test asan fault bench clean help

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

bench: deps
	@$(call setup,build-bench,$(BENCH_OPTS))
	$(MESON) compile -C build-bench
	@echo "bench: no benchmarks yet (they arrive with issue 5)"

clean:
	rm -rf build build-asan build-fault build-bench

help:
	@echo "make run    build, then run the daemon shmpoold in the foreground (default socket and segment)"
	@echo "make demo   build, then run the two-process demo of the core (build/tests/shmpool-demo)"
	@echo "make test   build, then run the test suite"
	@echo "make build  install missing packages, configure build/ once, compile"
	@echo "make deps   install missing Debian packages (scripts/deps.sh)"
	@echo "make asan   tests under AddressSanitizer+UBSan in build-asan/ (debug_checks=2)"
	@echo "make fault  tests with fault injection compiled in, in build-fault/"
	@echo "make bench  configure and compile build-bench/ (no benchmarks yet)"
	@echo "make clean  remove all build directories"
