#!/bin/sh
# run-fuzz.sh EXE SEEDS OUTDIR SECONDS - run one libFuzzer target for a
# bounded time.
#
# New inputs go to OUTDIR/corpus (the seed directory is only read), a crash,
# leak or timeout input to OUTDIR/artifacts/.  $FUZZ_SECONDS overrides
# SECONDS; $FUZZ_ARGS adds libFuzzer flags (e.g. -jobs=2).  The daemon's log
# lines are hidden (-close_fd_mask=2); libFuzzer's and the sanitizers'
# reports still show.  Exit status: 0 when nothing was found.
set -eu
exe=$1 seeds=$2 out=$3 seconds=${FUZZ_SECONDS:-$4}

mkdir -p "$out/corpus" "$out/artifacts"
echo "fuzzing $(basename "$exe") for $seconds s: seeds $seeds, corpus $out/corpus"
# shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
exec "$exe" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
	-close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
	${FUZZ_ARGS:-} "$out/corpus" "$seeds"
