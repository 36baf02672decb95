#!/usr/bin/env bash
# The cost of TLS on sequential I/O through a mount: starts a plain and a TLS dev cluster
# side by side (scripts/dev-cluster.sh, TLS=1 for the second) and runs bench-mount.sh's
# seqwrite and seqread (1 GiB, fio) on each in turn, ROUNDS (3) times alternating, then
# prints every figure and the medians, with the CPU seconds all of that cluster's processes
# (servers and mount) used per round: on a shared machine throughput is noisy, CPU time much
# less so. Use a release build:
#   cargo build --release --bin tessera -p tessera-cli
#   TESSERA_BIN=target/release/tessera scripts/bench-tls.sh [DIR]
# DIR (default /tmp/tessera-bench-tls) gets plain/ and tls/; both clusters are stopped at
# the end and DIR removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/tmp/tessera-bench-tls}
rounds=${ROUNDS:-3}
export TESSERA_BIN=${TESSERA_BIN:-$root/target/release/tessera}
mkdir -p "$dir"
cleanup() {
  "$root/scripts/dev-cluster.sh" down "$dir/plain" >/dev/null 2>&1 || true
  "$root/scripts/dev-cluster.sh" down "$dir/tls" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$root/scripts/dev-cluster.sh" up "$dir/plain" >/dev/null
TLS=1 "$root/scripts/dev-cluster.sh" up "$dir/tls" >/dev/null
# CPU seconds (user + system) used so far by the processes of the cluster in DIR.
cpu() {
  local t=0 f
  for f in "$1"/pids/*.pid; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$(cat "$f")/stat")))
  done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}'
}
declare -A figs
for r in $(seq "$rounds"); do
  for mode in plain tls; do
    before=$(cpu "$dir/$mode")
    out=$("$root/scripts/bench-mount.sh" "$dir/$mode/mnt" seqwrite seqread)
    used=$(awk -v a="$(cpu "$dir/$mode")" -v b="$before" 'BEGIN {printf "%.1f", a - b}')
    w=$(awk '/^seqwrite:/ {print $2}' <<<"$out")
    rd=$(awk '/^seqread:/ {print $2}' <<<"$out")
    echo "round $r $mode: seqwrite $w MB/s, seqread $rd MB/s, cluster CPU $used s"
    figs[$mode-write]+="$w "
    figs[$mode-read]+="$rd "
    figs[$mode-cpu]+="$used "
    rm -rf "$dir/$mode/mnt"/bench.*
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in plain tls; do
  echo "median $mode: seqwrite $(median <<<"${figs[$mode-write]}") MB/s, seqread $(median <<<"${figs[$mode-read]}") MB/s, cluster CPU $(median <<<"${figs[$mode-cpu]}") s per round"
done
