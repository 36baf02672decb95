#!/usr/bin/env bash
# Chunk service benchmark (issue 4): puts and gets of 1 MiB shards over loopback to a real
# release `tessera chunk`, 1 and 8 in flight, beside a plain fsynced fio write of the same
# amount to the same disk in the same run. Prints a Markdown table of medians.
#
#   scripts/bench-chunk.sh [DIR]       DIR: where the data goes (default target/bench-chunk)
#
# Environment: TESSERA_BENCH_MIB (MiB per step, default 256), TESSERA_BENCH_ROUNDS (default 5).
# A benchmark, not a test: nothing here passes or fails on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fio >/dev/null; then
  echo "fio is missing: apt-get install -y fio" >&2
  exit 1
fi
if [[ $# -gt 0 ]]; then
  export TESSERA_BENCH_DIR=$1
fi

cargo build --release -p tessera-cli --quiet
TESSERA_BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/release/tessera cargo bench -p tessera-tests --bench chunk_bench --quiet
