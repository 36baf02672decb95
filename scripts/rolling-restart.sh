#!/usr/bin/env bash
# Restarts every server process of a dev cluster (scripts/dev-cluster.sh) one at a time while
# clients keep working: the procedure of an upgrade, with the binary swapped under it.
#
#   scripts/rolling-restart.sh [DIR]     DIR defaults to /tmp/tessera-dev
#
# Metaservers first, followers before the leader; the leader hands its leadership to a
# caught-up follower before it stops (`tessera meta transfer-leader`), so no election waits
# for a timeout. Each metaserver must be back and caught up with the leader before the next
# stops (a majority always stays). Then each chunkserver: stopped, started, its heartbeat
# acknowledged, and every stripe whole again (`tessera repair --wait`: writes made while it
# was down were stored on k + 1 servers and are completed by repair) before the next, so no
# stripe loses two shards to the procedure. Last the mount: its supervisor hands the FUSE
# connection to a new serving process (`tessera mount --restart`, dev-cluster.sh mounts with
# `--supervise`); open files, locks and the kernel mount stay.
#
# Environment: TESSERA_BIN (default: <target>/debug/tessera, as dev-cluster.sh), SETTLE_S
# (seconds to wait for a member to catch up or a stripe repair, default 120).
set -euo pipefail

dir=${1:-/tmp/tessera-dev}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TESSERA_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/tessera}
settle=${SETTLE_S:-120}
dev="$root/scripts/dev-cluster.sh"

die() { echo "rolling-restart: $*" >&2; exit 1; }
say() { echo "rolling-restart: $*"; }

[[ -f $dir/cluster.env ]] || die "no cluster at $dir (start one with '$dev up $dir')"
dir=$(cd "$dir" && pwd)
# shellcheck disable=SC1091
. "$dir/cluster.env"
[[ -x $bin ]] || die "$bin not found"
export TESSERA_BIN=$bin

# "ROLE APPLIED LAST" of member ID as the group reports it, or nothing if it is down.
member() {
  "$bin" status --json 2>/dev/null | python3 -c '
import json, sys
want = int(sys.argv[1])
for m in json.load(sys.stdin)["meta"]:
    if m["id"] == want and m["role"] != "down":
        print(m["role"], m["applied_index"] or 0, m["last_log_index"] or 0)
' "$1" || true
}

# The leader's id and last log index, or nothing.
leader() {
  "$bin" status --json 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin)["meta"]:
    if m["role"] == "leader":
        print(m["id"], m["last_log_index"] or 0)
' || true
}

# Waits until member ID answers and has applied what the leader had logged when it came
# back (it replays its log or takes a snapshot).
wait_caught_up() {
  local id=$1 deadline=$((SECONDS + settle)) l target="" m
  while ((SECONDS < deadline)); do
    l=$(leader)
    m=$(member "$id")
    if [[ -n $l && -n $m ]]; then
      [[ -n $target ]] || target=$(cut -d' ' -f2 <<<"$l")
      if (($(cut -d' ' -f2 <<<"$m") >= target)); then return 0; fi
    fi
    sleep 0.5
  done
  die "metaserver $id did not catch up within ${settle}s; see $dir/logs/meta-$id.log"
}

metas=$(cd "$dir/pids" && ls meta-*.pid 2>/dev/null | sed 's/meta-\(.*\)\.pid/\1/' | sort -n)
chunks=$(cd "$dir/pids" && ls chunk-*.pid 2>/dev/null | sed 's/chunk-\(.*\)\.pid/\1/' | sort -n)
[[ -n $metas ]] || die "no metaserver pid files in $dir/pids"
started=$SECONDS

lead=$(leader | cut -d' ' -f1)
[[ -n $lead ]] || die "the metadata group has no leader; not restarting anything"
for id in $metas; do
  [[ $id == "$lead" ]] && continue
  say "metaserver $id (follower)"
  "$dev" restart "$dir" "meta-$id" >/dev/null
  wait_caught_up "$id"
done
for id in $metas; do
  [[ $id == "$lead" ]] || continue
  to=$(for o in $metas; do [[ $o != "$id" ]] && echo "$o"; done | head -1)
  say "metaserver $id (leader): leadership to $to first"
  "$bin" meta transfer-leader "$to" >/dev/null || die "transfer of the leadership to $to failed"
  "$dev" restart "$dir" "meta-$id" >/dev/null
  wait_caught_up "$id"
done

for id in $chunks; do
  say "chunkserver $id"
  "$dev" restart "$dir" "chunk-$id" >/dev/null
  "$bin" repair --wait-ms $((settle * 1000)) >/dev/null ||
    die "stripes still miss shards ${settle}s after chunkserver $id came back; see 'tessera status'"
done

say "the mount: handed to a new serving process"
"$dev" restart "$dir" mount >/dev/null
grep -q " $dir/mnt " /proc/self/mountinfo || die "$dir/mnt is no longer mounted after the handover"

say "done in $((SECONDS - started)) s: $(wc -w <<<"$metas") metaservers, $(wc -w <<<"$chunks") chunkservers and the mount's serving process restarted; the mount (supervisor pid $(cat "$dir/pids/mount.pid" 2>/dev/null || echo '?')) stayed"
