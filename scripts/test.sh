#!/usr/bin/env bash
# The one test entry for Tessera (the README's test command; .ci/run calls it).
#
# Runs, in order: formatting, lints, docs, the build of the `tessera` binary that the
# multi-process tests start, and every test in the workspace. Ends with one summary line
# "summary: N passed, M failed". Exit status is non-zero if any step fails.
set -uo pipefail
cd "$(dirname "$0")/.."

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/tessera-test.XXXXXX")
trap 'rm -rf "$log_dir"' EXIT
failed_steps=()

step() {
  local name=$1
  shift
  echo "==> $name"
  local started=$SECONDS
  if "$@"; then
    echo "    ok ($((SECONDS - started)) s)"
  else
    echo "    FAILED: $name"
    failed_steps+=("$name")
  fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# Multi-process tests start this binary; build it before the tests that need it.
step "build tessera" cargo build -p tessera-cli --quiet

# The random differential test (mount_linux_api) draws a new seed each run; it is recorded
# here so a failure can be replayed with TESSERA_DIFF_SEED=N.
export TESSERA_DIFF_SEED=${TESSERA_DIFF_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "==> cargo test --workspace (differential seed: TESSERA_DIFF_SEED=$TESSERA_DIFF_SEED)"
cargo test --workspace --no-fail-fast 2>&1 | tee "$log_dir/test.log"
test_status=${PIPESTATUS[0]}
[[ $test_status -eq 0 ]] || failed_steps+=("cargo test")

# POSIX suites on a live mount: a dev cluster (3 metaservers, 6 chunkservers, EC 4+2),
# pjdfstest and 100,000 fsx operations with a recorded seed, then the cluster goes down.
posix_suites() {
  local dir rc=0
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tessera-posix.XXXXXX")
  # pjdfstest switches to other users (nobody, daemon): they must be able to reach the mount.
  chmod 755 "$dir"
  if scripts/dev-cluster.sh up "$dir" >"$log_dir/dev-cluster.log" 2>&1; then
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    scripts/posix-suites.sh "$TESSERA_MOUNT" 100000 20261125 || rc=1
  else
    echo "dev cluster did not start:"
    tail -20 "$log_dir/dev-cluster.log"
    rc=1
  fi
  scripts/dev-cluster.sh down "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
  return $rc
}
step "POSIX suites (pjdfstest, fsx)" posix_suites

passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log_dir/test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log_dir/test.log" | awk '{s+=$1} END {print s+0}')
if [[ $test_status -ne 0 && $failed -eq 0 ]]; then
  # A test binary that did not build or crashed counts as a failure too.
  failed=1
fi

if ((${#failed_steps[@]})); then
  echo "failed steps: ${failed_steps[*]}"
fi
echo "summary: $passed passed, $failed failed"
((${#failed_steps[@]} == 0))
