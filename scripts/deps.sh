#!/usr/bin/env bash
# Install the Debian packages shmpool needs to build and test, if any are missing.
# Quiet and exits 0 when everything is already there.
set -euo pipefail

# Build: build-essential (gcc), meson, ninja-build, pkg-config, python3 (meson, .ci/run).
# Libraries: cmocka (tests), libuv, protobuf-c (+ compiler), inih, json-c, libsystemd.
# Docs: scdoc (man pages). Later tooling: clang (fuzzing), valgrind.
# Tests of the CLI and the units (tests/ctl): python3-prometheus-client (the
# metrics parser), systemd (systemd-analyze, systemd-socket-activate,
# systemd-sysusers: not always there in a container image).
# The benchmark's peers (build-bench, -Dbench=true, only; the normal build
# never needs them and the benchmark skips one that is missing): g++ and
# libboost-dev (Boost.Interprocess), libjemalloc-dev, libmimalloc-dev,
# libgoogle-perftools-dev (tcmalloc).
PACKAGES="build-essential meson ninja-build pkg-config python3
	libcmocka-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler
	libinih-dev libjson-c-dev libsystemd-dev scdoc clang valgrind
	python3-prometheus-client systemd
	g++ libboost-dev libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev"

missing=()
for pkg in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$pkg")
	fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "shmpool: missing packages: ${missing[*]}" >&2
	echo "Install them with:" >&2
	echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

echo "shmpool: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
