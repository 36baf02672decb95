#!/usr/bin/env bash
# Metadata benchmark: creates/s, stats/s and unlinks/s through the client library against
# a 3-member group of release-built `tessera meta` processes on 127.0.0.1.
# Usage: scripts/bench-meta.sh   (TESSERA_BENCH_ROUNDS=N for more rounds; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tessera-cli
TESSERA_BIN="$PWD/target/release/tessera" cargo bench -p tessera-tests --bench meta_ops
# What a snapshot of 100,000 files costs the state machine (time, metadata bytes).
cargo bench -p tessera-metaserver --bench snapshot_apply
