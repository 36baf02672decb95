#!/usr/bin/env bash
# POSIX conformance on a live mount: pjdfstest, then fsx.
#
#   scripts/posix-suites.sh MOUNT [FSX_OPS] [FSX_SEED]
#
# MOUNT is a mounted Tessera file system (e.g. TESSERA_MOUNT from scripts/dev-cluster.sh).
# Needs `cargo install pjdfstest fsx`. pjdfstest binds Unix sockets under its test path,
# whose length is limited (~100 bytes for the socket path), so it runs through a short
# symlink. Exit status is non-zero if either suite fails; fsx keeps its artefacts (the
# operation log and the good/bad file images) under MOUNT's parent on failure.
set -euo pipefail

mnt=${1:?usage: $0 MOUNT [FSX_OPS] [FSX_SEED]}
ops=${2:-100000}
seed=${3:-20261125}
here=$(cd "$(dirname "$0")" && pwd)
for tool in pjdfstest fsx; do
  command -v "$tool" >/dev/null || { echo "$tool not found: cargo install $tool" >&2; exit 1; }
done

work=$mnt/posix-suites.$$
mkdir -p "$work/pjd" "$work/fsx"
link=/tmp/pjd.$$
ln -sfn "$work/pjd" "$link"
art=$(mktemp -d "${TMPDIR:-/tmp}/fsx-art.XXXXXX")
cleanup() { rm -f "$link"; rm -rf "$work"; }
trap cleanup EXIT

status=0
echo "==> pjdfstest on $mnt"
(cd /tmp && pjdfstest -c "$here/pjdfstest.toml" -p "$link") | tee "$art/pjdfstest.txt" | grep -v ' ok$' || true
grep -q '^Summary: 0 failed' "$art/pjdfstest.txt" || status=1

echo "==> fsx: $ops operations, seed $seed"
if ! fsx -N "$ops" -S "$seed" -P "$art" "$work/fsx/file" >"$art/fsx.txt" 2>&1; then
  echo "fsx failed; its log and file images are in $art" >&2
  tail -20 "$art/fsx.txt" >&2
  status=1
else
  tail -1 "$art/fsx.txt"
fi
[[ $status == 0 ]] && rm -rf "$art"
exit $status
